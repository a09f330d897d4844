using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Integrations.Benchmarks.Support;
using Integrations.Benchmarks.ToolsInvoke;
using Integrations.Common;
using Integrations.Infrastructure.Security;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using ModelContextProtocol.Client;
using ModelContextProtocol.Protocol;

namespace Integrations.Benchmarks.McpGateway;

/// <summary>
/// Benchmark 7 (issue 13): benchmark 4's C# echo MCP server reached three ways in one run, each with the SDK's
/// <see cref="McpClient"/> over one shared Streamable HTTP session: directly; through our <c>/mcp</c> on the real API
/// host (API key, tool resolution by name, then tools.invoke itself: policy, schema, audit, invocation row); and
/// through mcp-hub 4.2.1 (a peer gateway under node that relays to the same server and persists nothing). Fixed rate
/// and saturation per path (<see cref="GatewayComparison"/>); CPU per call of the load generator, the API host,
/// PostgreSQL and mcp-hub; then our tenant's audit chain verified and its invocation rows counted against our successes.
/// </summary>
public sealed class McpGatewayBenchmark(BenchSettings settings, Report report)
{
    public const string Tenant = "bench-mcp-gateway";

    private const string Direct = "direct", Ours = "ours (/mcp)", Hub = "mcp-hub";
    private const string Message = "benchmark payload";

    // Issue 13's targets, all ratios within one run.
    private const double TargetP50OverDirect = 2, TargetSaturationOverDirect = 0.5, TargetSaturationOverHub = 2;

    private static readonly GatewayLoad AtRate = new(LoadDriver.FixedRate, Saturated: false);
    private static readonly GatewayLoad Saturation = new(LoadDriver.Saturation, Saturated: true);

    public async Task RunAsync(string connectionString)
    {
        await using var echo = new EchoMcpServer();
        await echo.StartAsync();
        var key = await InProcessService.MintKeyAsync(connectionString, Tenant, "bench-mcp-gateway", Scopes.Read, Scopes.Write, Scopes.Invoke);

        await using var api = await ApiProcess.StartReadyAsync(settings, connectionString, "api-mcp-gateway",
            new Dictionary<string, string> { ["Integrations__Network__EgressAllow__0"] = "127.0.0.1" });
        using var http = new HttpClient { BaseAddress = api.BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        await ToolsInvokeBenchmark.RegisterAsync(http, echo.Endpoint);

        await using var hub = await StartHubAsync(echo.Endpoint);
        await using var direct = await ClientAsync(echo.Endpoint, HttpTransportMode.StreamableHttp, bearer: null);
        await using var ours = await ClientAsync(new Uri(api.BaseAddress, "/mcp"), HttpTransportMode.StreamableHttp, key);
        // mcp-hub 4.2.1 serves its unified endpoint over the HTTP+SSE transport only (GET /mcp for the stream, POST /messages).
        await using var throughHub = await ClientAsync(new Uri(hub.Address, "/mcp"), HttpTransportMode.Sse, bearer: null);
        var ourTool = await EchoToolAsync(ours, Ours);
        var hubTool = await EchoToolAsync(throughHub, Hub);
        Console.WriteLine($"[mcp-gateway] the echo tool is `{ourTool}` through /mcp and `{hubTool}` through mcp-hub");

        var successes = new long[3];
        var arguments = new Dictionary<string, object?> { ["message"] = Message };
        Call Through(McpClient client, string tool, int counter) => async ct =>
        {
            var result = await client.CallToolAsync(tool, arguments, cancellationToken: ct);
            var ok = result.IsError != true && result.Content.OfType<TextContentBlock>().Any(t => t.Text == Message);
            if (ok) Interlocked.Increment(ref successes[counter]);
            return ok;
        };
        var paths = new List<GatewayPath> { new(Direct, Through(direct, "echo", 0)), new(Ours, Through(ours, ourTool, 1)), new(Hub, Through(throughHub, hubTool, 2)) };

        var postmaster = await LoadDriver.PostmasterPidAsync(connectionString);
        var cpu = new CpuMeter(() => new Dictionary<string, IReadOnlyList<int>>
        {
            ["load generator + echo server"] = [Environment.ProcessId],
            ["API host"] = [api.Pid],
            ["PostgreSQL"] = CpuMeter.ProcessTree(postmaster),
            [Hub] = CpuMeter.ProcessTree(hub.Process.Pid),
        });
        var driver = new LoadDriver("mcp-gateway", settings.GatewayRate, settings.GatewayRateSeconds, settings.GatewayCallers);
        var comparison = new GatewayComparison(driver, settings, cpu, paths, [AtRate, Saturation], connectionString);
        await comparison.RunAsync("mcp-gateway");

        var memory = (Api: api.Memory().Peak, Hub: ProcessMemory.Read(hub.Process.Pid).Peak);
        var integrity = await ToolsInvokeBenchmark.CheckIntegrityAsync(http, connectionString, Tenant, Interlocked.Read(ref successes[1]),
            Interlocked.Read(ref successes[0]) + Interlocked.Read(ref successes[2]), echo.ToolCalls);
        Describe(comparison, integrity, ourTool, hubTool, memory);
    }

    private sealed record HubProcess(ChildProcess Process, Uri Address) : IAsyncDisposable
    {
        public ValueTask DisposeAsync() => Process.DisposeAsync();
    }

    /// <summary>mcp-hub with one remote server, the echo server, in a config file of the results folder; ready when it reports the server connected.</summary>
    private async Task<HubProcess> StartHubAsync(Uri echoEndpoint)
    {
        var port = ChildProcess.FreePort();
        var config = Path.Combine(settings.OutputDirectory, "mcp-hub.json");
        await File.WriteAllTextAsync(config, JsonSerializer.Serialize(new { mcpServers = new Dictionary<string, object> { ["echo"] = new { url = echoEndpoint.ToString() } } }));
        // Its workspace cache and logs go to the XDG folders: kept in the results folder, not the user's home.
        var home = Path.Combine(settings.OutputDirectory, "mcp-hub-home");
        Directory.CreateDirectory(home);
        var process = NodePeer.Start(settings, "mcp-hub/dist/cli.js", ["--port", port.ToString(CultureInfo.InvariantCulture), "--config", config], "mcp-hub",
            new Dictionary<string, string>
            {
                ["HOME"] = home,
                ["XDG_STATE_HOME"] = Path.Combine(home, "state"),
                ["XDG_CONFIG_HOME"] = Path.Combine(home, "config"),
                ["XDG_DATA_HOME"] = Path.Combine(home, "data"),
                ["XDG_CACHE_HOME"] = Path.Combine(home, "cache"),
            });
        var address = new Uri($"http://127.0.0.1:{port}");
        try
        {
            using var probe = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
            await process.WaitUntilAsync("mcp-hub", async () =>
            {
                using var health = JsonDocument.Parse(await probe.GetStringAsync(new Uri(address, "/api/health")));
                return health.RootElement.GetProperty("servers").EnumerateArray().Any(s => s.GetProperty("status").GetString() == "connected");
            }, TimeSpan.FromSeconds(60));
        }
        catch
        {
            await process.DisposeAsync();
            throw;
        }
        return new HubProcess(process, address);
    }

    private static Task<McpClient> ClientAsync(Uri endpoint, HttpTransportMode mode, string? bearer) =>
        McpClient.CreateAsync(new HttpClientTransport(new HttpClientTransportOptions
        {
            Endpoint = endpoint,
            TransportMode = mode,
            EnableStandaloneGetStream = false,
            AdditionalHeaders = bearer is null ? null : new Dictionary<string, string> { ["Authorization"] = $"Bearer {bearer}" },
        }, new HttpClient(new SocketsHttpHandler { UseCookies = false, PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5) }), NullLoggerFactory.Instance, ownsHttpClient: true));

    /// <summary>The name a gateway lists the echo tool under (each prefixes the server's name its own way).</summary>
    private static async Task<string> EchoToolAsync(McpClient client, string gateway)
    {
        var tools = await client.ListToolsAsync();
        return tools.Select(t => t.Name).SingleOrDefault(name => name == "echo" || name.EndsWith("echo", StringComparison.Ordinal))
               ?? throw new InvalidOperationException($"{gateway} lists no echo tool: {string.Join(", ", tools.Select(t => t.Name))}");
    }

    private void Describe(GatewayComparison runs, ToolsInvokeBenchmark.Integrity integrity, string ourTool, string hubTool, (long Api, long Hub) memory)
    {
        var rate = settings.GatewayRate;
        var md = new StringBuilder();
        md.AppendLine("**What runs.** Benchmark 4's C# MCP server (one tool, `echo(message)`, the SDK's `McpServer` over stateless Streamable HTTP in Kestrel on 127.0.0.1, " +
                      "in the load generator's process), called with the SDK's `McpClient` (one Streamable HTTP session per path, shared by every caller) three ways: " +
                      $"*{Direct}*; *{Ours}*, the API host's MCP endpoint (its own process, Production settings) with an API key as `Authorization: Bearer`, calling " +
                      $"`{ourTool}`: key and scope, the tool found by name, then tools.invoke itself — policy, input-schema check, audit `requested` + `allowed` + " +
                      "`started`, the call over the gateway's pooled MCP session, audit `completed` + the invocation row (no rate limit or credential configured); and " +
                      $"*{Hub}*, mcp-hub 4.2.1 under node {NodePeer.NodeVersion()} with the echo server as its one remote server, calling `{hubTool}` on its `/mcp` " +
                      "(the HTTP+SSE transport, the only one its unified endpoint serves; the hub reaches the echo server over Streamable HTTP; no key, no policy, nothing persisted). " +
                      $"*Fixed rate*: {rate} calls/s for {settings.GatewayRateSeconds} s per path, open loop (latency from each call's due time). " +
                      $"*Saturation*: {settings.GatewayCallers} callers, each calling again when answered, {settings.GatewaySaturationSeconds} s per path after a 0.5 s ramp. " +
                      $"{settings.GatewayWarmupSeconds} s of untimed saturation per path first; {settings.GatewayRepetitions} repetition(s), alternating which path goes first. " +
                      "*Added* is a gateway's figure minus direct's in the same repetition; headline figures are medians over repetitions.");
        md.AppendLine();
        md.AppendLine("| | target (issue 13) | median | " + string.Join(" | ", runs.Repetitions.Select(r => $"rep {r}")) + " |");
        md.AppendLine("|---|---|---|" + string.Concat(runs.Repetitions.Select(_ => "---|")));
        string Row(string label, string target, Func<int, double> perRepetition, Func<double, string> format) =>
            $"| {label} | {target} | **{format(runs.Median(perRepetition))}** | {string.Join(" | ", runs.Repetitions.Select(r => format(perRepetition(r))))} |";
        string Times(double value) => value.ToString("0.00", CultureInfo.InvariantCulture) + " ×";
        string Ms(double value) => Fmt.Ms(value) + " ms";
        double Over(string path, Func<LoadRun, double> figure, int r) => figure(runs.Get(path, AtRate, r)) - figure(runs.Get(Direct, AtRate, r));
        double Ratio(string path, string baseline, GatewayLoad load, Func<LoadRun, double> figure, int r) =>
            figure(runs.Get(path, load, r)) / Math.Max(1e-9, figure(runs.Get(baseline, load, r)));
        md.AppendLine(Row($"ours p50 / direct's p50 at {rate}/s", $"≤ {TargetP50OverDirect} ×", r => Ratio(Ours, Direct, AtRate, GatewayComparison.P50, r), Times));
        md.AppendLine(Row($"ours: added p50 at {rate}/s", "≤ mcp-hub's", r => Over(Ours, GatewayComparison.P50, r), Ms));
        md.AppendLine(Row($"mcp-hub: added p50 at {rate}/s", "", r => Over(Hub, GatewayComparison.P50, r), Ms));
        md.AppendLine(Row($"ours: added p99 at {rate}/s", "≤ mcp-hub's", r => Over(Ours, GatewayComparison.P99, r), Ms));
        md.AppendLine(Row($"mcp-hub: added p99 at {rate}/s", "", r => Over(Hub, GatewayComparison.P99, r), Ms));
        md.AppendLine(Row("saturation ours / direct", $"≥ {TargetSaturationOverDirect}", r => Ratio(Ours, Direct, Saturation, GatewayComparison.PerSecond, r), Times));
        md.AppendLine(Row("saturation ours / mcp-hub", $"≥ {TargetSaturationOverHub}", r => Ratio(Ours, Hub, Saturation, GatewayComparison.PerSecond, r), Times));
        md.AppendLine(Row("*saturation mcp-hub / direct*", "", r => Ratio(Hub, Direct, Saturation, GatewayComparison.PerSecond, r), Times));
        md.AppendLine();
        md.AppendLine(runs.LoadTable("call"));
        md.AppendLine();
        md.AppendLine(runs.CpuTable("call"));
        md.AppendLine();
        md.AppendLine(runs.WaitsTable(Ours));
        md.AppendLine();
        var rowsMatch = integrity.InvocationRows == integrity.GatewaySuccesses && integrity.CompletedRows == integrity.GatewaySuccesses
                        && integrity.CompletedEvents == integrity.GatewaySuccesses;
        md.AppendLine($"**Integrity after the run** (warm-up included). `POST /audit/verify` for tenant `{Tenant}`: chain **{(integrity.ChainValid ? "valid" : "BROKEN")}**, " +
                      $"{integrity.EventsChecked:N0} events checked in {integrity.VerifyTime.TotalSeconds:0.0} s. Successful calls through /mcp: {integrity.GatewaySuccesses:N0}; " +
                      $"invocation rows: {integrity.InvocationRows:N0} ({integrity.CompletedRows:N0} `completed`); `tool.invocation.completed` events: {integrity.CompletedEvents:N0} " +
                      $"— {(rowsMatch ? "**equal**" : "**NOT equal**")}. The echo server answered {integrity.ServerToolCalls:N0} tools/call requests for " +
                      $"{integrity.DirectSuccesses:N0} direct and mcp-hub + {integrity.GatewaySuccesses:N0} /mcp successes.");
        md.AppendLine();
        md.AppendLine($"**Memory** (peak RSS over the stage): API host {Fmt.Mb(memory.Api)}, mcp-hub {Fmt.Mb(memory.Hub)}.");
        foreach (var failure in runs.Failures())
        {
            md.AppendLine();
            md.AppendLine(failure);
        }
        report.Add(new Section(7, "7. MCP gateway (/mcp) vs direct and mcp-hub", md.ToString()));

        var p50Ratio = runs.Ratio(Ours, Direct, AtRate, GatewayComparison.P50);
        report.Target(new TargetResult($"7. MCP gateway p50 at {rate}/s / direct's (issue 13)", $"≤ {TargetP50OverDirect} ×",
            $"{p50Ratio:0.00} × ({Fmt.Ms(runs.Median(Ours, AtRate, GatewayComparison.P50))} vs {Fmt.Ms(runs.Median(Direct, AtRate, GatewayComparison.P50))} ms)", p50Ratio <= TargetP50OverDirect));
        foreach (var (name, figure) in new (string, Func<LoadRun, double>)[] { ("p50", GatewayComparison.P50), ("p99", GatewayComparison.P99) })
        {
            var ourAdded = runs.Added(Ours, Direct, AtRate, figure);
            var hubAdded = runs.Added(Hub, Direct, AtRate, figure);
            report.Target(new TargetResult($"7. MCP gateway added {name} at {rate}/s (issue 13)", "≤ mcp-hub's",
                $"{Fmt.Ms(ourAdded)} ms vs mcp-hub {Fmt.Ms(hubAdded)} ms", ourAdded <= hubAdded));
        }
        var overDirect = runs.Ratio(Ours, Direct, Saturation, GatewayComparison.PerSecond);
        var overHub = runs.Ratio(Ours, Hub, Saturation, GatewayComparison.PerSecond);
        var perSecond = $"{runs.Median(Ours, Saturation, GatewayComparison.PerSecond):N0}/s vs direct {runs.Median(Direct, Saturation, GatewayComparison.PerSecond):N0}/s, " +
                        $"mcp-hub {runs.Median(Hub, Saturation, GatewayComparison.PerSecond):N0}/s";
        report.Target(new TargetResult($"7. MCP gateway saturation, {settings.GatewayCallers} callers (issue 13)", $"≥ {TargetSaturationOverDirect} × direct, ≥ {TargetSaturationOverHub} × mcp-hub",
            $"{overDirect:0.00} × direct, {overHub:0.00} × mcp-hub ({perSecond})", overDirect >= TargetSaturationOverDirect && overHub >= TargetSaturationOverHub));
        report.Target(new TargetResult("7. MCP gateway integrity", "chain valid, invocation rows = successes",
            $"{(integrity.ChainValid ? "valid" : "broken")}, {integrity.InvocationRows:N0} rows for {integrity.GatewaySuccesses:N0} successes", integrity.ChainValid && rowsMatch));
    }
}
