using System.Diagnostics;
using System.Text.Json;
using Integrations.Tests.Support;

namespace Integrations.Tests.LlmGateway;

public sealed class KestrelLlmGatewayFixture : LlmGatewayFixture
{
    protected override bool RealServer => true;
}

/// <summary>The <c>openai</c> npm client (pinned in tests/fixtures) in a node process, against the gateway on a real port.</summary>
public sealed class NodeOpenAiClientTests(KestrelLlmGatewayFixture fixture) : IClassFixture<KestrelLlmGatewayFixture>
{
    [Fact]
    public async Task The_openai_npm_client_chats_streams_and_embeds_through_the_gateway()
    {
        var tenant = await fixture.TenantAsync();
        var fixtures = NpmFixtures.Directory;
        var start = new ProcessStartInfo("node", [Path.Combine(fixtures, "llm-openai-client.mjs")])
        {
            WorkingDirectory = fixtures,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            Environment =
            {
                ["OPENAI_BASE_URL"] = new Uri(fixture.Address, "/v1").ToString(),
                ["OPENAI_API_KEY"] = tenant.LlmKey,
                ["CHAT_MODEL"] = "llm/gpt-4o-mini",
                ["EMBEDDING_MODEL"] = "llm/text-embedding-3-small",
            },
        };
        using var node = Process.Start(start)!;
        var stdout = node.StandardOutput.ReadToEndAsync();
        var stderr = node.StandardError.ReadToEndAsync();
        await node.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
        Assert.True(node.ExitCode == 0, await stderr);

        var result = JsonDocument.Parse(await stdout).RootElement;
        Assert.Equal("echo: from node", result.GetProperty("answer").GetString());
        Assert.Equal(FakeOpenAi.PromptTokens, result.GetProperty("promptTokens").GetInt32());
        Assert.Equal(string.Concat(FakeOpenAi.Words), result.GetProperty("streamed").GetString());
        Assert.Equal(FakeOpenAi.CompletionTokens, result.GetProperty("streamedUsage").GetInt32());
        Assert.Equal(3, result.GetProperty("embedding").GetArrayLength());
        Assert.Equal((404, "not_found"), (result.GetProperty("refused").GetProperty("status").GetInt32(), result.GetProperty("refused").GetProperty("code").GetString()));

        var rows = await tenant.UsageAsync(3); // the unknown model found no integration: audited, but no usage row
        Assert.Equal(["chat.completions", "chat.completions", "embeddings"], rows.Select(r => r.Endpoint));
        Assert.Equal([false, true, false], rows.Select(r => r.Streaming));
        Assert.All(rows, r => Assert.Equal("completed", r.Status));
        foreach (var row in rows)
        {
            Assert.Equal(["llm.request.requested", "llm.request.allowed", "llm.request.started", "llm.request.completed"], await tenant.EventsAsync(row.Id));
        }
    }
}
