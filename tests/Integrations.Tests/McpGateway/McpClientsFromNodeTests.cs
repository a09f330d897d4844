using System.Diagnostics;
using System.Text.Json;
using Integrations.Tests.Support;

namespace Integrations.Tests.McpGateway;

/// <summary>
/// Clients from another ecosystem against <c>/mcp</c>: the official TypeScript SDK (@modelcontextprotocol/sdk, pinned in
/// tests/fixtures' package-lock) in a node script, and the MCP Inspector's CLI (@modelcontextprotocol/inspector 1.0.3,
/// <c>--cli</c>; 2.12.0's lock file does not survive <c>npm ci</c> here, see README).
/// </summary>
[Collection(EverythingServerCollection.Name)]
public sealed class McpClientsFromNodeTests(EverythingServer everything, McpGatewayFixture gateway) : IClassFixture<McpGatewayFixture>
{
    [Fact]
    public async Task The_typescript_sdk_connects_with_the_bearer_key_lists_and_calls_everything__echo()
    {
        var (key, rest) = await gateway.TenantAsync();
        await McpGatewayFixture.RegisterAsync(rest, "everything", everything.Endpoint);

        var output = await RunNodeAsync("mcp-gateway-client.mjs", gateway.McpEndpoint.ToString(), key, "everything__echo", """{"message":"from typescript"}""");

        var answer = JsonDocument.Parse(output.Trim().Split('\n')[^1]).RootElement;
        Assert.Equal("2025-11-25", answer.GetProperty("protocolVersion").GetString());
        var tools = answer.GetProperty("tools").EnumerateArray().Select(t => t.GetString()).ToList();
        Assert.Contains("everything__echo", tools);
        Assert.Contains("everything__get-sum", tools);
        var result = answer.GetProperty("result");
        Assert.False(result.TryGetProperty("isError", out var isError) && isError.GetBoolean());
        Assert.Contains("from typescript", result.GetProperty("content")[0].GetProperty("text").GetString());
    }

    [Fact]
    public async Task The_typescript_sdk_without_a_key_is_refused()
    {
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() =>
            RunNodeAsync("mcp-gateway-client.mjs", gateway.McpEndpoint.ToString(), "ik_wrong", "everything__echo", "{}"));
        Assert.Contains("401", error.Message);
    }

    [Fact]
    public async Task The_inspector_cli_lists_and_calls_a_tool()
    {
        var (key, rest) = await gateway.TenantAsync();
        var (serverId, _) = await McpGatewayFixture.RegisterAsync(rest, "everything", everything.Endpoint);
        var inspector = Path.Combine("node_modules", "@modelcontextprotocol", "inspector", "cli", "build", "cli.js");
        string[] connect = ["--cli", gateway.McpEndpoint.ToString(), "--transport", "http", "--header", $"Authorization: Bearer {key}"];

        var listed = JsonDocument.Parse(await RunNodeAsync(inspector, [.. connect, "--method", "tools/list"])).RootElement;
        Assert.Contains("everything__echo", listed.GetProperty("tools").EnumerateArray().Select(t => t.GetProperty("name").GetString()));

        var called = JsonDocument.Parse(await RunNodeAsync(inspector,
            [.. connect, "--method", "tools/call", "--tool-name", "everything__get-sum", "--tool-arg", "a=19", "b=23",
                "--tool-metadata", "integrations/run_id=inspector-run"])).RootElement;
        Assert.Contains("42", called.GetProperty("content")[0].GetProperty("text").GetString());
        var rows = JsonDocument.Parse(await rest.GetStringAsync($"/integrations/mcp-servers/{serverId}/invocations?run_id=inspector-run")).RootElement;
        Assert.Equal("get-sum", Assert.Single(rows.GetProperty("items").EnumerateArray()).GetProperty("tool_name").GetString());
    }

    private static async Task<string> RunNodeAsync(string script, params string[] arguments)
    {
        var fixtures = NpmFixtures.Directory;
        var start = new ProcessStartInfo("node", [script, .. arguments])
        {
            WorkingDirectory = fixtures,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        // The Inspector keeps its catalog under HOME; a test writes nothing outside its own folder.
        var home = Directory.CreateTempSubdirectory("inspector-home");
        start.Environment["HOME"] = home.FullName;
        try
        {
            using var node = Process.Start(start) ?? throw new InvalidOperationException("node could not be started; install Node.js 20+.");
            var stdout = node.StandardOutput.ReadToEndAsync();
            var stderr = node.StandardError.ReadToEndAsync();
            await node.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
            if (node.ExitCode != 0) throw new InvalidOperationException($"node {script} exited with {node.ExitCode}:\n{await stdout}\n{await stderr}");
            return await stdout;
        }
        finally
        {
            home.Delete(recursive: true);
        }
    }
}
