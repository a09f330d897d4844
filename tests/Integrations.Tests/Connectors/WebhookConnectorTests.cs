using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Integrations.Features.Connectors.Adapters;
using Integrations.Tests.McpGateway;
using Integrations.Tests.Support;
using static Integrations.Tests.Connectors.ConnectorTestKit;

namespace Integrations.Tests.Connectors;

/// <summary>The webhook connector against a real local receiver that verifies signatures: signing, replay window, retries, dead letter, redelivery.</summary>
public sealed class WebhookConnectorTests(McpGatewayFixture service) : IClassFixture<McpGatewayFixture>
{
    private const string Secret = "whsec-3f9a";

    private async Task<(string Tenant, HttpClient Client, JsonElement Connection, WebhookReceiver Receiver)> WebhookAsync(int maxAttempts = 3)
    {
        var tenant = TestEnvironment.NewTenant();
        var (_, rest) = await service.KeyAndClientAsync(tenant, McpGatewayFixture.AllScopes);
        var receiver = await WebhookReceiver.StartAsync(Secret);
        var secret = await StoreCredentialAsync(rest, new { name = "hook-secret", type = "api_key", secret = Secret });
        var connection = await CreateConnectionAsync(rest, new
        {
            name = "hook",
            connector = "webhook",
            configuration = new { url = receiver.Url, max_attempts = maxAttempts, retry_delay_ms = 20 },
            credential_ref = secret,
        });
        return (tenant, rest, connection, receiver);
    }

    [Fact]
    public async Task A_delivery_is_signed_over_timestamp_and_body_and_a_receiver_refuses_tampering_and_replays()
    {
        var (_, rest, connection, receiver) = await WebhookAsync();
        await using var _ = receiver;
        var delivered = await JsonAsync(await InvokeAsync(rest, connection, "deliver", new { @event = "order.created", payload = new { id = 7, note = "naïve ☃" } }), 200);
        Assert.Equal("delivered", delivered.GetProperty("output").GetProperty("status").GetString());

        var received = Assert.Single(receiver.Deliveries);
        Assert.True(received.Verified);
        Assert.Equal("order.created", received.Event);
        var body = JsonDocument.Parse(received.Body).RootElement;
        Assert.Equal("naïve ☃", body.GetProperty("payload").GetProperty("note").GetString());
        Assert.Equal(delivered.GetProperty("invocation_id").GetString(), body.GetProperty("delivery_id").GetString());
        var expected = WebhookSignature.Sign(Secret, long.Parse(received.Timestamp!), received.Body);
        Assert.Equal(expected, received.Signature);

        var tampered = Encoding.UTF8.GetBytes(Encoding.UTF8.GetString(received.Body).Replace("7", "8"));
        Assert.False(WebhookSignature.Verify(Secret, received.Timestamp, received.Signature, tampered, DateTimeOffset.UtcNow));
        Assert.False(WebhookSignature.Verify("other", received.Timestamp, received.Signature, received.Body, DateTimeOffset.UtcNow));
        Assert.False(WebhookSignature.Verify(Secret, received.Timestamp, received.Signature, received.Body, DateTimeOffset.UtcNow.AddMinutes(6)));
        Assert.True(WebhookSignature.Verify(Secret, received.Timestamp, received.Signature, received.Body, DateTimeOffset.UtcNow.AddMinutes(4)));

        var test = await JsonAsync(await rest.PostAsync($"/connections/{connection.GetProperty("id")}/test", null), 200);
        Assert.True(test.GetProperty("ok").GetBoolean());
    }

    [Fact]
    public async Task Server_errors_are_retried_with_backoff_until_delivered_and_every_attempt_is_logged()
    {
        var (_, rest, connection, receiver) = await WebhookAsync(maxAttempts: 4);
        await using var _ = receiver;
        receiver.Script.Enqueue(503);
        receiver.Script.Enqueue(500);
        var delivered = await JsonAsync(await InvokeAsync(rest, connection, "deliver", new { @event = "e", payload = new { } }), 200);
        Assert.Equal(3, delivered.GetProperty("output").GetProperty("attempts").GetInt32());
        Assert.Equal([503, 500, 200], receiver.Deliveries.Select(d => d.Answered));

        var log = await JsonAsync(await rest.GetAsync($"/connections/{connection.GetProperty("id")}/deliveries"), 200);
        var entry = Assert.Single(log.GetProperty("items").EnumerateArray());
        Assert.Equal("delivered", entry.GetProperty("status").GetString());
        Assert.Equal([503, 500, 200], entry.GetProperty("attempt_log").EnumerateArray().Select(a => a.GetProperty("status_code").GetInt32()));
    }

    [Fact]
    public async Task After_max_attempts_a_delivery_is_dead_lettered_opens_an_incident_and_can_be_redelivered()
    {
        var (tenant, rest, connection, receiver) = await WebhookAsync(maxAttempts: 3);
        await using var _ = receiver;
        foreach (var status in new[] { 500, 502, 503 }) receiver.Script.Enqueue(status);
        var dead = await JsonAsync(await InvokeAsync(rest, connection, "deliver", new { @event = "e", payload = new { n = 1 } }), 502);
        Assert.Contains("dead-lettered after 3 attempts", dead.GetProperty("detail").GetString());
        Assert.Equal(1, await OwnerSql.ScalarAsync<long>(service.Api.ConnectionString,
            "SELECT count(*) FROM incidents WHERE tenant_id = @tenant AND subject_type = 'connection_action'", new { tenant }));

        var id = connection.GetProperty("id").GetString();
        var deadLetters = await JsonAsync(await rest.GetAsync($"/connections/{id}/deliveries?status=dead_letter"), 200);
        var delivery = Assert.Single(deadLetters.GetProperty("items").EnumerateArray());
        Assert.Equal(3, delivery.GetProperty("attempts").GetInt32());

        var redelivered = await JsonAsync(await rest.PostAsync($"/connections/{id}/deliveries/{delivery.GetProperty("id").GetString()}/redeliver", null), 200);
        Assert.Equal("delivered", redelivered.GetProperty("output").GetProperty("status").GetString());
        var first = JsonDocument.Parse(receiver.Deliveries.First().Body).RootElement;
        var last = JsonDocument.Parse(receiver.Deliveries.Last().Body).RootElement;
        Assert.Equal(first.GetProperty("delivery_id").GetString(), last.GetProperty("delivery_id").GetString());
        Assert.True(receiver.Deliveries.Last().Verified);
        var after = await JsonAsync(await rest.GetAsync($"/connections/{id}/deliveries"), 200);
        var now = Assert.Single(after.GetProperty("items").EnumerateArray());
        Assert.Equal("delivered", now.GetProperty("status").GetString());
        Assert.Equal(4, now.GetProperty("attempts").GetInt32());
    }

    [Fact]
    public async Task A_client_error_fails_at_once_without_retrying()
    {
        var (_, rest, connection, receiver) = await WebhookAsync(maxAttempts: 5);
        await using var _ = receiver;
        receiver.Script.Enqueue(400);
        var failed = await JsonAsync(await InvokeAsync(rest, connection, "deliver", new { @event = "e", payload = new { } }), 502);
        Assert.Contains("not retried", failed.GetProperty("detail").GetString());
        Assert.Single(receiver.Deliveries);
    }
}
