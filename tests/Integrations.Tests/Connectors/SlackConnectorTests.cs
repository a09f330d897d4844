using System.Net.Http.Json;
using Integrations.Tests.McpGateway;
using Integrations.Tests.Support;
using static Integrations.Tests.Connectors.ConnectorTestKit;

namespace Integrations.Tests.Connectors;

/// <summary>The slack connector against a local fake of the Web API: post, reply in a thread, Slack's refusals, the token check.</summary>
public sealed class SlackConnectorTests(McpGatewayFixture service) : IClassFixture<McpGatewayFixture>
{
    [Fact]
    public async Task Posts_a_message_and_a_thread_reply_with_the_bot_token_and_answers_slack_refusals_as_upstream_errors()
    {
        await using var slack = await FakeSlack.StartAsync("xoxb-test-1");
        var (_, rest) = await service.TenantAsync();
        var token = await StoreCredentialAsync(rest, new { name = "bot", type = "bearer_token", secret = "xoxb-test-1" });
        var connection = await CreateConnectionAsync(rest, new { name = "slack", connector = "slack", configuration = new { base_url = slack.BaseUrl }, credential_ref = token });

        var posted = await JsonAsync(await InvokeAsync(rest, connection, "post_message", new { channel = "C-ops", text = "Deploy *done* <@here>" }), 200);
        var ts = posted.GetProperty("output").GetProperty("ts").GetString();
        await JsonAsync(await InvokeAsync(rest, connection, "post_message", new { channel = "C-ops", text = "details", thread_ts = ts }), 200);
        Assert.Equal([("C-ops", "Deploy *done* <@here>", null), ("C-ops", "details", ts)],
            slack.Messages.Select(m => (m.Channel, m.Text, m.ThreadTs)));

        var unknown = await JsonAsync(await InvokeAsync(rest, connection, "post_message", new { channel = "C-nope", text = "x" }), 502);
        Assert.Equal("channel_not_found", unknown.GetProperty("slack_error").GetString());

        var test = await JsonAsync(await rest.PostAsync($"/connections/{connection.GetProperty("id")}/test", null), 200);
        Assert.True(test.GetProperty("ok").GetBoolean());
        var wrong = await StoreCredentialAsync(rest, new { name = "bad-bot", type = "bearer_token", secret = "xoxb-wrong" });
        var bad = await CreateConnectionAsync(rest, new { name = "slack-bad", connector = "slack", configuration = new { base_url = slack.BaseUrl }, credential_ref = wrong });
        var refused = await JsonAsync(await rest.PostAsync($"/connections/{bad.GetProperty("id")}/test", null), 200);
        Assert.False(refused.GetProperty("ok").GetBoolean());
        Assert.Contains("invalid_auth", refused.GetProperty("detail").GetString());

        var apiKey = await StoreCredentialAsync(rest, new { name = "k", type = "api_key", secret = "xoxb-test-1" });
        var wrongType = await CreateConnectionAsync(rest, new { name = "slack-key", connector = "slack", configuration = new { base_url = slack.BaseUrl }, credential_ref = apiKey });
        var typeRefused = await JsonAsync(await InvokeAsync(rest, wrongType, "post_message", new { channel = "C-ops", text = "x" }), 403);
        Assert.Equal("credential_denied", typeRefused.GetProperty("code").GetString());
    }
}
