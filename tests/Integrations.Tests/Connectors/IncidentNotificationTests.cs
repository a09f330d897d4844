using System.Net.Http.Json;
using System.Text.Json;
using Integrations.Features.Notifications;
using Integrations.Tests.McpGateway;
using Integrations.Tests.Support;
using Microsoft.Extensions.DependencyInjection;
using static Integrations.Tests.Connectors.ConnectorTestKit;

namespace Integrations.Tests.Connectors;

/// <summary>
/// PUT /notifications routes incidents to a webhook (a receiver checking signatures) and to Slack (the fake Web API):
/// once per state change, escalations too, failures recorded and without effect on the incident.
/// </summary>
public sealed class IncidentNotificationTests(McpGatewayFixture service) : IClassFixture<McpGatewayFixture>
{
    private const string Secret = "whsec-notify";

    private static async Task EventuallyAsync(Func<bool> condition)
    {
        for (var i = 0; i < 100 && !condition(); i++) await Task.Delay(100);
        Assert.True(condition());
    }

    [Fact]
    public async Task A_new_incident_reaches_the_webhook_and_slack_once_an_escalation_again_and_a_failing_channel_leaves_the_incident_alone()
    {
        var tenant = TestEnvironment.NewTenant();
        var (_, rest) = await service.KeyAndClientAsync(tenant, McpGatewayFixture.AllScopes);
        await using var receiver = await WebhookReceiver.StartAsync(Secret);
        await using var broken = await WebhookReceiver.StartAsync(Secret);
        for (var i = 0; i < 10; i++) broken.Script.Enqueue(500);
        await using var slack = await FakeSlack.StartAsync("xoxb-n");
        await using var upstream = await FakeRestService.StartAsync();

        var secret = await StoreCredentialAsync(rest, new { name = "hook", type = "api_key", secret = Secret });
        var bot = await StoreCredentialAsync(rest, new { name = "bot", type = "bearer_token", secret = "xoxb-n" });
        var token = await StoreCredentialAsync(rest, new { name = "crm", type = "bearer_token", secret = "t" });
        var hook = await CreateConnectionAsync(rest, new { name = "ops-hook", connector = "webhook", configuration = new { url = receiver.Url, retry_delay_ms = 10 }, credential_ref = secret });
        var down = await CreateConnectionAsync(rest, new { name = "down-hook", connector = "webhook", configuration = new { url = broken.Url, max_attempts = 1 }, credential_ref = secret });
        var chat = await CreateConnectionAsync(rest, new { name = "ops-slack", connector = "slack", configuration = new { base_url = slack.BaseUrl, default_channel = "C-general" }, credential_ref = bot });
        await JsonAsync(await rest.PostAsJsonAsync("/connectors", new { manifest = CrmManifest("crm") }), 201);
        var crm = await CreateConnectionAsync(rest, new { name = "crm", connector = "crm", configuration = new { base_url = upstream.BaseUrl }, credential_ref = token });

        var refused = await JsonAsync(await rest.PutAsJsonAsync("/notifications", new { rules = new[] { new { connection_id = crm.GetProperty("id").GetString() } } }), 400);
        Assert.Equal("validation_failed", refused.GetProperty("code").GetString());
        await JsonAsync(await rest.PutAsJsonAsync("/notifications", new
        {
            rules = new object[]
            {
                new { connection_id = hook.GetProperty("id").GetString() },
                new { connection_id = chat.GetProperty("id").GetString(), min_severity = "high", kinds = new[] { "connector_failure" }, channel = "C-ops" },
                new { connection_id = down.GetProperty("id").GetString() },
            },
        }), 200);

        await JsonAsync(await InvokeAsync(rest, crm, "fail", new { }), 502); // opens a high connector_failure incident
        var incidentId = await OwnerSql.ScalarAsync<Guid>(service.Api.ConnectionString,
            "SELECT id FROM incidents WHERE tenant_id = @tenant AND subject_type = 'connection_action'", new { tenant });
        var notifier = service.Api.Services.GetRequiredService<IncidentNotifier>();
        await notifier.RunOnceAsync(CancellationToken.None);
        // The failing channel's own failure is an incident too, which the other channels hear of: look at the crm incident's.
        List<WebhookReceiver.Received> About() => receiver.Deliveries.Where(d => d.Body.AsSpan().IndexOf(System.Text.Encoding.UTF8.GetBytes(incidentId.ToString())) >= 0).ToList();
        List<FakeSlack.Message> SlackAbout() => slack.Messages.Where(m => m.Text.Contains("crm/fail", StringComparison.Ordinal)).ToList();
        await EventuallyAsync(() => About().Count == 1 && SlackAbout().Count == 1);

        var opened = JsonDocument.Parse(Assert.Single(About()).Body).RootElement;
        Assert.True(About().Single().Verified);
        Assert.Equal("incident.opened", opened.GetProperty("event").GetString());
        Assert.Equal(incidentId.ToString(), opened.GetProperty("payload").GetProperty("incident_id").GetString());
        Assert.Equal("connector_failure", opened.GetProperty("payload").GetProperty("kind").GetString());
        Assert.Contains(incidentId.ToString(), opened.GetProperty("payload").GetProperty("link").GetString());
        var message = Assert.Single(SlackAbout());
        Assert.Equal("C-ops", message.Channel);
        Assert.StartsWith("New incident [high] connector_failure: crm/fail", message.Text);

        // The same state again — another pass, another occurrence — is not sent twice.
        await JsonAsync(await InvokeAsync(rest, crm, "fail", new { }), 502);
        await notifier.RunOnceAsync(CancellationToken.None);
        await Task.Delay(300);
        Assert.Single(About());
        Assert.Single(SlackAbout());

        await OwnerSql.ExecuteAsync(service.Api.ConnectionString, "UPDATE incidents SET occurrences = 10 WHERE id = @incidentId", new { incidentId });
        await notifier.RunOnceAsync(CancellationToken.None);
        await EventuallyAsync(() => About().Count == 2 && SlackAbout().Count == 2);
        Assert.Equal("incident.escalated", JsonDocument.Parse(About().Last().Body).RootElement.GetProperty("event").GetString());
        Assert.StartsWith("Incident escalated (10 occurrences)", SlackAbout().Last().Text);

        var deliveries = await JsonAsync(await rest.GetAsync($"/notifications/deliveries?incident_id={incidentId}"), 200);
        var rows = deliveries.GetProperty("items").EnumerateArray()
            .Select(d => (Connection: d.GetProperty("connection_id").GetString(), State: d.GetProperty("state_change").GetString(), Outcome: d.GetProperty("outcome").GetString()))
            .ToList();
        Assert.Equal(6, rows.Count);
        Assert.All(rows.Where(r => r.Connection == down.GetProperty("id").GetString()), r => Assert.Equal("failed", r.Outcome));
        Assert.All(rows.Where(r => r.Connection != down.GetProperty("id").GetString()), r => Assert.Equal("delivered", r.Outcome));

        // The failing channel changed nothing about the incident it was telling of.
        var incident = await OwnerSql.QueryAsync<(string Status, int Occurrences)>(service.Api.ConnectionString,
            "SELECT status, occurrences FROM incidents WHERE id = @incidentId", new { incidentId });
        Assert.Equal([("open", 10)], incident);
        var rules = await JsonAsync(await rest.GetAsync("/notifications"), 200);
        Assert.Equal(3, rules.GetProperty("rules").GetArrayLength());
    }

    [Fact]
    public async Task An_incident_reaches_an_smtp_connection_as_an_email_once_per_state_change_and_a_refusing_server_is_only_logged()
    {
        var tenant = TestEnvironment.NewTenant();
        var (_, rest) = await service.KeyAndClientAsync(tenant, McpGatewayFixture.AllScopes);
        await using var smtp = await SmtpReceiver.StartAsync("starttls", "notifier", "mail-pw");
        await using var upstream = await FakeRestService.StartAsync();
        var login = await StoreCredentialAsync(rest, new { name = "smtp", type = "basic_auth", username = "notifier", password = "mail-pw" });
        var stale = await StoreCredentialAsync(rest, new { name = "stale", type = "basic_auth", username = "notifier", password = "rotated-away" });
        object Smtp(string[]? defaultTo = null) => defaultTo is null
            ? new { host = "127.0.0.1", port = smtp.Port, from = "Integrations <alerts@example.com>", ca_certificate = SmtpReceiver.CertificatePem }
            : new { host = "127.0.0.1", port = smtp.Port, from = "Integrations <alerts@example.com>", ca_certificate = SmtpReceiver.CertificatePem, default_to = defaultTo };
        var mail = await CreateConnectionAsync(rest, new { name = "ops-mail", connector = "smtp", configuration = Smtp(["oncall@example.com", "lead@example.com"]), credential_ref = login });
        var refusing = await CreateConnectionAsync(rest, new { name = "stale-mail", connector = "smtp", configuration = Smtp(), credential_ref = stale });
        await JsonAsync(await rest.PostAsJsonAsync("/connectors", new { manifest = CrmManifest("crm") }), 201);
        var token = await StoreCredentialAsync(rest, new { name = "crm", type = "bearer_token", secret = "t" });
        var crm = await CreateConnectionAsync(rest, new { name = "crm", connector = "crm", configuration = new { base_url = upstream.BaseUrl }, credential_ref = token });

        // A rule to an SMTP connection says to whom: its channel, else the connection's default_to.
        var noRecipient = await JsonAsync(await rest.PutAsJsonAsync("/notifications", new { rules = new[] { new { connection_id = refusing.GetProperty("id").GetString() } } }), 400);
        Assert.True(noRecipient.GetProperty("errors").TryGetProperty("rules[0].channel", out _));
        await JsonAsync(await rest.PutAsJsonAsync("/notifications", new { rules = new[] { new { connection_id = refusing.GetProperty("id").GetString(), channel = "not an address" } } }), 400);
        await JsonAsync(await rest.PutAsJsonAsync("/notifications", new
        {
            rules = new object[]
            {
                new { connection_id = mail.GetProperty("id").GetString(), kinds = new[] { "connector_failure" } },
                new { connection_id = refusing.GetProperty("id").GetString(), channel = "security@example.com" },
            },
        }), 200);

        await JsonAsync(await InvokeAsync(rest, crm, "fail", new { }), 502);
        var incidentId = await OwnerSql.ScalarAsync<Guid>(service.Api.ConnectionString,
            "SELECT id FROM incidents WHERE tenant_id = @tenant AND subject_type = 'connection_action'", new { tenant });
        var notifier = service.Api.Services.GetRequiredService<IncidentNotifier>();
        await notifier.RunOnceAsync(CancellationToken.None);
        // The refusing channel's own failure is an incident too, which ops-mail hears of: look at the crm incident's.
        List<SmtpReceiver.Received> About() => smtp.Messages.Where(m => m.Message.TextBody?.Contains(incidentId.ToString(), StringComparison.Ordinal) == true).ToList();
        await EventuallyAsync(() => About().Count == 1);
        var opened = Assert.Single(About());
        Assert.Equal("alerts@example.com", opened.From);
        Assert.Equal(["oncall@example.com", "lead@example.com"], opened.To);
        Assert.Equal(("notifier", true), (opened.User, opened.Secure));
        Assert.StartsWith("New incident [high] connector_failure: crm/fail", opened.Message.Subject);
        Assert.Contains($"/incidents?status=open#{incidentId}", opened.Message.TextBody);
        Assert.Contains("Kind:        connector_failure", opened.Message.TextBody);

        await JsonAsync(await InvokeAsync(rest, crm, "fail", new { }), 502);
        await notifier.RunOnceAsync(CancellationToken.None);
        await Task.Delay(300);
        Assert.Single(About());

        await OwnerSql.ExecuteAsync(service.Api.ConnectionString, "UPDATE incidents SET occurrences = 10 WHERE id = @incidentId", new { incidentId });
        await notifier.RunOnceAsync(CancellationToken.None);
        await EventuallyAsync(() => About().Count == 2);
        Assert.StartsWith("Incident escalated (10 occurrences) [high] connector_failure", About().Last().Message.Subject);

        var deliveries = await JsonAsync(await rest.GetAsync($"/notifications/deliveries?incident_id={incidentId}"), 200);
        var rows = deliveries.GetProperty("items").EnumerateArray()
            .Select(d => (Connection: d.GetProperty("connection_id").GetString(), State: d.GetProperty("state_change").GetString(), Outcome: d.GetProperty("outcome").GetString(),
                Code: d.GetProperty("error_code").GetString(), Error: d.GetProperty("error").GetString()))
            .OrderBy(r => r.Connection).ThenBy(r => r.State).ToList();
        Assert.Equal(4, rows.Count);
        Assert.All(rows.Where(r => r.Connection == mail.GetProperty("id").GetString()), r => Assert.Equal(("delivered", null), (r.Outcome, r.Code)));
        Assert.All(rows.Where(r => r.Connection == refusing.GetProperty("id").GetString()), r =>
        {
            Assert.Equal(("failed", "upstream_error"), (r.Outcome, r.Code));
            Assert.Contains("refused the credentials", r.Error);
            Assert.DoesNotContain("rotated-away", r.Error);
        });
        Assert.Equal(["escalated:10", "opened"], rows.Where(r => r.Connection == refusing.GetProperty("id").GetString()).Select(r => r.State));
        Assert.DoesNotContain(smtp.Messages, m => m.To.Contains("security@example.com"));

        var incident = await OwnerSql.QueryAsync<(string Status, int Occurrences)>(service.Api.ConnectionString,
            "SELECT status, occurrences FROM incidents WHERE id = @incidentId", new { incidentId });
        Assert.Equal([("open", 10)], incident);
    }
}
