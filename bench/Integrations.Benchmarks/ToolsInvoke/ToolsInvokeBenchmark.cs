using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Dapper;
using Integrations.Benchmarks.Support;
using Integrations.Common;
using Integrations.Infrastructure.Security;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using ModelContextProtocol.Client;
using ModelContextProtocol.Protocol;
using Npgsql;

namespace Integrations.Benchmarks.ToolsInvoke;

/// <summary>
/// Benchmark 4: the same one-tool C# echo MCP server called three ways in one run: directly with the SDK client
/// (<see cref="McpClient"/>, one session shared by every caller, as the gateway shares its pooled session); through
/// an ungoverned relay (<see cref="RelayServer"/>: the two hops of any HTTP gateway, nothing else); and through
/// <c>tools.invoke</c> over HTTP on the real API host (API key, policy, schema validation, two audited commits
/// carrying four audit events and the invocation row). Two loads per path: a fixed rate (open loop: each call has a scheduled send
/// time and its latency runs from that time, so a stalled system is charged for the calls it could not send —
/// no coordinated omission) and saturation (N callers, each sending as soon as it has its answer). Repetitions
/// alternate which path goes first; the report shows each repetition and their medians. Afterwards the tenant's
/// audit chain is verified over HTTP (<c>POST /audit/verify</c>) and the invocation rows are counted against the
/// gateway's 2xx answers. The API host's peak RSS over the whole stage is benchmark 5's peak memory.
/// </summary>
public sealed class ToolsInvokeBenchmark(BenchSettings settings, Report report)
{
    public const string Tenant = "bench-invoke";

    // The targets of this suite (issue 7 item 4), and the first, looser ones issue 5 set.
    private const double TargetAddedP50 = 1, TargetAddedP99 = 5, TargetRatio = 0.6;
    private const double FirstTargetAddedP50 = 2, FirstTargetAddedP99 = 10, FirstTargetRatio = 0.5;

    // Issue 20: p50 at the fixed rate against direct's, CPU per call against the relay's, and at the fixed rate against saturation.
    private const double TargetP50Ratio = 2, TargetCpuRatio = 2, TargetIdleCpuRatio = 1.5;

    private const string ApiHost = "API host", Postgres = "PostgreSQL";

    private const string Message = "benchmark payload";

    /// <summary>The API host's peak resident memory over this stage (VmHWM, or the highest sampled VmRSS).</summary>
    public long PeakRssBytes { get; private set; }

    public long RssAfterStartBytes { get; private set; }

    public async Task RunAsync(string connectionString)
    {
        await using var echo = new EchoMcpServer();
        await echo.StartAsync();
        await using var relay = new RelayServer();
        await relay.StartAsync(echo.Endpoint);
        var key = await InProcessService.MintKeyAsync(connectionString, Tenant, "bench-invoke", Scopes.Read, Scopes.Write, Scopes.Invoke);

        await using var api = await ApiProcess.StartReadyAsync(settings, connectionString, "api-tools-invoke",
            new Dictionary<string, string> { ["Integrations__Network__EgressAllow__0"] = "127.0.0.1" });
        RssAfterStartBytes = api.Memory().Rss;
        long peakSampled = 0;
        using var sampling = new CancellationTokenSource();
        var sampler = Task.Run(async () =>
        {
            while (!sampling.IsCancellationRequested)
            {
                peakSampled = Math.Max(peakSampled, api.Memory().Rss);
                try { await Task.Delay(250, sampling.Token); } catch (OperationCanceledException) { }
            }
        });

        using var http = new HttpClient(new SocketsHttpHandler { UseCookies = false, PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5) })
        {
            BaseAddress = api.BaseAddress,
            Timeout = TimeSpan.FromSeconds(30),
        };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        var (serverId, toolId) = await RegisterAsync(http, echo.Endpoint);
        var invokePath = $"/integrations/mcp-servers/{serverId}/tools/{toolId}/invoke";
        var invokeBody = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new { arguments = new { message = Message } }));

        await using var direct = await McpClient.CreateAsync(new HttpClientTransport(new HttpClientTransportOptions
        {
            Endpoint = echo.Endpoint,
            TransportMode = HttpTransportMode.StreamableHttp,
            EnableStandaloneGetStream = false,
        }, new HttpClient(new SocketsHttpHandler { UseCookies = false }), NullLoggerFactory.Instance, ownsHttpClient: true));
        var directArguments = new Dictionary<string, object?> { ["message"] = Message };

        long gatewayOk = 0, directOk = 0;
        Call viaDirect = async ct =>
        {
            var result = await direct.CallToolAsync("echo", directArguments, cancellationToken: ct);
            var ok = result.IsError != true && result.Content is [TextContentBlock { Text: Message }];
            if (ok) Interlocked.Increment(ref directOk);
            return ok;
        };
        Call ViaGateway(HttpClient client) => async ct =>
        {
            using var content = new ByteArrayContent(invokeBody);
            content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
            using var response = await client.PostAsync(invokePath, content, ct);
            var body = await response.Content.ReadAsStringAsync(ct);
            var ok = response.StatusCode == HttpStatusCode.OK && body.Contains("\"outcome\":\"completed\"", StringComparison.Ordinal);
            if (response.IsSuccessStatusCode) Interlocked.Increment(ref gatewayOk);
            return ok;
        };
        var viaGateway = ViaGateway(http);
        using var relayHttp = new HttpClient(new SocketsHttpHandler { UseCookies = false, PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5) })
        {
            Timeout = TimeSpan.FromSeconds(30),
        };
        long relayOk = 0;
        Call viaRelay = async ct =>
        {
            using var content = new ByteArrayContent(invokeBody);
            content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
            using var response = await relayHttp.PostAsync(relay.Endpoint, content, ct);
            var body = await response.Content.ReadAsStringAsync(ct);
            var ok = response.StatusCode == HttpStatusCode.OK && body.Contains(Message, StringComparison.Ordinal);
            if (ok) Interlocked.Increment(ref relayOk);
            return ok;
        };
        var paths = new (string Name, Call Call)[] { ("direct", viaDirect), ("relay", viaRelay), ("gateway", viaGateway) };

        var driver = new LoadDriver("tools-invoke", settings.InvokeRate, settings.InvokeRateSeconds, settings.InvokeCallers);
        var postmaster = await LoadDriver.PostmasterPidAsync(connectionString);
        var cpu = new CpuMeter(() => new Dictionary<string, IReadOnlyList<int>>
        {
            ["load generator + echo server"] = [Environment.ProcessId],
            [ApiHost] = [api.Pid],
            [Postgres] = CpuMeter.ProcessTree(postmaster),
        });

        // Warm-up (JIT, connection pools, prepared statements, the gateway's pooled MCP session): not timed.
        foreach (var (name, call) in paths)
        {
            Console.WriteLine($"[tools-invoke] warm-up {name}: {settings.InvokeWarmupSeconds} s at saturation...");
            await driver.SaturationAsync(name, 0, call, settings.InvokeWarmupSeconds, cpu);
        }

        var runs = new List<LoadRun>();
        for (var repetition = 1; repetition <= settings.InvokeRepetitions; repetition++)
        {
            var order = repetition % 2 == 1 ? paths : paths.Reverse().ToArray();
            foreach (var (name, call) in order) runs.Add(await driver.FixedRateAsync(name, repetition, call, cpu));
            foreach (var (name, call) in order) runs.Add(await driver.SaturationAsync(name, repetition, call, settings.InvokeSaturationSeconds, cpu));
        }

        var variants = new List<VariantRun>();
        foreach (var (label, environment) in settings.InvokeVariants)
        {
            var variantEnvironment = new Dictionary<string, string>(environment) { ["Integrations__Network__EgressAllow__0"] = "127.0.0.1" };
            await using var variantApi = await ApiProcess.StartReadyAsync(settings, connectionString, $"api-tools-invoke-{label}", variantEnvironment);
            using var variantHttp = new HttpClient(new SocketsHttpHandler { UseCookies = false, PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5) })
            {
                BaseAddress = variantApi.BaseAddress,
                Timeout = TimeSpan.FromSeconds(30),
            };
            variantHttp.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
            var viaVariant = ViaGateway(variantHttp);
            var variantCpu = new CpuMeter(() => new Dictionary<string, IReadOnlyList<int>>
            {
                ["load generator + echo server"] = [Environment.ProcessId],
                [ApiHost] = [variantApi.Pid],
                [Postgres] = CpuMeter.ProcessTree(postmaster),
            });
            Console.WriteLine($"[tools-invoke] variant {label} ({string.Join(", ", environment.Select(e => $"{e.Key}={e.Value}"))}): warm-up...");
            // Three times the usual warm-up: the shipped host has been warm since the runs above, and a fresh host still
            // compiles its hot methods again at tier 1 for a while (seen as JIT time in its first timed run).
            await driver.SaturationAsync($"gateway ({label})", 0, viaVariant, 3 * settings.InvokeWarmupSeconds, variantCpu);
            // The shipped host again beside it, in the same repetitions, so the two are compared at the same moment of the machine.
            for (var repetition = 1; repetition <= settings.InvokeRepetitions; repetition++)
            {
                variants.Add(new VariantRun(label, "shipped", await driver.FixedRateAsync("gateway (shipped)", repetition, viaGateway, cpu)));
                variants.Add(new VariantRun(label, label, await driver.FixedRateAsync($"gateway ({label})", repetition, viaVariant, variantCpu)));
                variants.Add(new VariantRun(label, "shipped", await driver.SaturationAsync("gateway (shipped)", repetition, viaGateway, settings.InvokeSaturationSeconds, cpu)));
                variants.Add(new VariantRun(label, label, await driver.SaturationAsync($"gateway ({label})", repetition, viaVariant, settings.InvokeSaturationSeconds, variantCpu)));
            }
        }

        await sampling.CancelAsync();
        await sampler;
        PeakRssBytes = Math.Max(api.Memory().Peak, peakSampled);

        var integrity = await CheckIntegrityAsync(http, connectionString, Tenant, Interlocked.Read(ref gatewayOk),
            Interlocked.Read(ref directOk) + Interlocked.Read(ref relayOk), echo.ToolCalls);

        // The limit last, on the same cluster, once the service's runs are over (issue 20): the call's two transactions under pgbench.
        var limits = new List<GovernedCallLimit.Result>();
        foreach (var tenants in new[] { settings.InvokeCallers, 1 })
        {
            Console.WriteLine($"[tools-invoke] limit: pgbench, {settings.InvokeCallers} clients over {tenants} tenant(s), {settings.InvokeSaturationSeconds} s...");
            var limit = await GovernedCallLimit.RunAsync(connectionString, settings.OutputDirectory, serverId, toolId, tenants, settings.InvokeCallers, settings.InvokeSaturationSeconds);
            Console.WriteLine($"[tools-invoke] limit over {tenants} tenant(s): {limit.CallsPerSecond:N0} calls/s ({limit.Run.Failed} failed)");
            limits.Add(limit);
        }
        Describe(runs, integrity, limits);
        if (variants.Count > 0) DescribeVariants(variants);
    }

    internal static async Task<(Guid Server, Guid Tool)> RegisterAsync(HttpClient http, Uri endpoint)
    {
        using var response = await http.PostAsync("/integrations/mcp-servers",
            new StringContent(JsonSerializer.Serialize(new { name = "bench-echo", url = endpoint.ToString() }), Encoding.UTF8, "application/json"));
        var body = await response.Content.ReadAsStringAsync();
        if (!response.IsSuccessStatusCode) throw new InvalidOperationException($"registering the echo server answered {(int)response.StatusCode}: {body}");
        using var document = JsonDocument.Parse(body);
        var server = document.RootElement.GetProperty("server").GetProperty("id").GetGuid();
        var tool = document.RootElement.GetProperty("tools").EnumerateArray().Single(t => t.GetProperty("name").GetString() == "echo");
        if (!tool.GetProperty("enabled").GetBoolean()) throw new InvalidOperationException($"the echo tool was registered disabled: {tool}");
        return (server, tool.GetProperty("id").GetGuid());
    }

    internal sealed record Integrity(
        bool ChainValid, long EventsChecked, long GatewaySuccesses, long InvocationRows, long CompletedRows, long CompletedEvents,
        long DirectSuccesses, long ServerToolCalls, TimeSpan VerifyTime);

    /// <summary>
    /// The chain of <paramref name="tenant"/> verified, and its invocation rows and <c>tool.invocation.completed</c> events
    /// counted against the gateway's successes (also the MCP gateway stage's check: one governed call, one home).
    /// </summary>
    internal static async Task<Integrity> CheckIntegrityAsync(HttpClient http, string connectionString, string tenant, long gatewayOk, long directOk, long serverCalls)
    {
        var verified = await AuditVerify.RunAsync(http);
        await using var connection = new NpgsqlConnection(connectionString);
        var rows = await connection.QuerySingleAsync<(long Total, long Completed)>(
            "SELECT count(*), count(*) FILTER (WHERE outcome = 'completed') FROM mcp_tool_invocations WHERE tenant_id = @tenant", new { tenant });
        var completedEvents = await connection.ExecuteScalarAsync<long>(
            "SELECT count(*) FROM audit_events WHERE tenant_id = @tenant AND action = 'tool.invocation.completed'", new { tenant });
        var integrity = new Integrity(verified.Valid, verified.EventsChecked, gatewayOk, rows.Total, rows.Completed, completedEvents, directOk, serverCalls, verified.Took);
        Console.WriteLine($"[integrity] audit chain of {tenant} valid: {integrity.ChainValid} ({integrity.EventsChecked} events); gateway 2xx {gatewayOk}, invocation rows {rows.Total} " +
                          $"({rows.Completed} completed), completed events {completedEvents}; echo server tools/call {serverCalls} = other paths {directOk} + gateway {gatewayOk}?");
        return integrity;
    }

    private sealed record VariantRun(string Variant, string Host, LoadRun Run);

    private void DescribeVariants(IReadOnlyList<VariantRun> variants)
    {
        var md = new StringBuilder();
        md.AppendLine("**API host settings compared** (`BENCH_INVOKE_VARIANTS`): per variant, a host of its own with those environment variables and the shipped host " +
                      "run in turns in the same repetitions (fixed rate, then saturation); medians over repetitions. CPU ms per call: the API host, PostgreSQL, and " +
                      "*service* (both); *rate / saturation* is the service's CPU per call at the fixed rate over its CPU per call at saturation.");
        md.AppendLine();
        md.AppendLine($"| variant | host | p50 at {settings.InvokeRate}/s | CPU at {settings.InvokeRate}/s: API host / PostgreSQL / service | calls/s at saturation | " +
                      "CPU at saturation: API host / PostgreSQL / service | rate / saturation |");
        md.AppendLine("|---|---|---|---|---|---|---|");
        foreach (var group in variants.GroupBy(v => v.Variant))
        {
            foreach (var host in group.Select(v => v.Host).Distinct())
            {
                var atRate = group.Where(v => v.Host == host && v.Run.Load == "fixed rate").Select(v => v.Run).ToList();
                var saturated = group.Where(v => v.Host == host && v.Run.Load == "saturation").Select(v => v.Run).ToList();
                string Cpu(List<LoadRun> these) =>
                    $"{Latency.Median(these.Select(r => CpuPerCall(r, ApiHost))):0.000} / {Latency.Median(these.Select(r => CpuPerCall(r, Postgres))):0.000} / " +
                    $"{Latency.Median(these.Select(ServiceCpuPerCall)):0.000}";
                md.AppendLine($"| {group.Key} | {host} | {Fmt.Ms(Latency.Median(atRate.Select(r => r.Latency.Percentile(50))))} ms | {Cpu(atRate)} | " +
                              $"{Latency.Median(saturated.Select(r => r.PerSecond)):N0} | {Cpu(saturated)} | " +
                              $"{Latency.Median(atRate.Select(ServiceCpuPerCall)) / Latency.Median(saturated.Select(ServiceCpuPerCall)):0.00} |");
            }
        }
        foreach (var (label, environment) in settings.InvokeVariants)
        {
            md.AppendLine();
            md.AppendLine($"`{label}`: {string.Join(", ", environment.Select(e => $"`{e.Key}={e.Value}`"))}");
        }
        report.Add(new Section(4, "4. tools.invoke: API host settings compared", md.ToString()));
    }

    private void Describe(IReadOnlyList<LoadRun> runs, Integrity integrity, IReadOnlyList<GovernedCallLimit.Result> limits)
    {
        var reps = Enumerable.Range(1, settings.InvokeRepetitions).ToArray();
        LoadRun Get(string path, string load, int rep) => runs.Single(r => r.Path == path && r.Load == load && r.Repetition == rep);
        double Med(Func<int, double> f) => Latency.Median(reps.Select(f));

        double Over(string path, string baseline, int rep, double p) =>
            Get(path, "fixed rate", rep).Latency.Percentile(p) - Get(baseline, "fixed rate", rep).Latency.Percentile(p);
        double AddedP(int rep, double p) => Over("gateway", "direct", rep, p);
        double RatioOf(string path, string baseline, int rep) =>
            Get(path, "saturation", rep).PerSecond / Math.Max(1e-9, Get(baseline, "saturation", rep).PerSecond);
        double Ratio(int rep) => RatioOf("gateway", "direct", rep);
        var addedP50 = Med(r => AddedP(r, 50));
        var addedP99 = Med(r => AddedP(r, 99));
        var ratio = Med(Ratio);
        string Ratio2(double value) => value.ToString("0.00", CultureInfo.InvariantCulture);
        // A comparison row without a target: its median, then each repetition.
        string LatencyRow(string label, string path, string baseline) =>
            $"| *{label}* | | | {Fmt.Ms(Med(r => Over(path, baseline, r, 50)))} / {Fmt.Ms(Med(r => Over(path, baseline, r, 99)))} ms | " +
            string.Join(" | ", reps.Select(r => $"{Fmt.Ms(Over(path, baseline, r, 50))} / {Fmt.Ms(Over(path, baseline, r, 99))}")) + " |";
        string RatioRow(string label, string path, string baseline) =>
            $"| *{label}* | | | {Ratio2(Med(r => RatioOf(path, baseline, r)))} | {string.Join(" | ", reps.Select(r => Ratio2(RatioOf(path, baseline, r))))} |";

        var md = new StringBuilder();
        md.AppendLine($"**What runs.** One C# MCP server with one tool, `echo(message)` (the SDK's `McpServer` over a stateless Streamable HTTP transport in Kestrel on " +
                      "127.0.0.1, in the load generator's process), called three ways: *direct*, with the SDK's `McpClient` (one session shared by every caller); " +
                      "*relay*, the floor of any HTTP gateway: `POST /relay` on a Kestrel endpoint (in the load generator's process) that passes the call on over one shared " +
                      "`McpClient` session and answers its result, with no key, policy, schema, audit or database; and " +
                      "*gateway*, `POST /integrations/mcp-servers/{id}/tools/{toolId}/invoke` on the real API host (its own process, Production settings, Kestrel) with " +
                      "an API key: key lookup, scope, validation, policy, input-schema check, audit `requested` + `allowed`, `started`, the call over the gateway's " +
                      "pooled MCP session, audit `completed` + the invocation row. The server was registered through the API; no rate limit and no credential are configured, " +
                      "so neither the rate-limit statements nor the vault run. " +
                      $"*Fixed rate*: {settings.InvokeRate} calls/s for {settings.InvokeRateSeconds} s per path, open loop (call i is due at start + i/rate and sent then from a " +
                      "dedicated thread; latency runs from when it was due, so a stall is charged to every call it delays). " +
                      $"*Saturation*: {settings.InvokeCallers} callers, each calling again as soon as it is answered, {settings.InvokeSaturationSeconds} s per path after a 0.5 s ramp. " +
                      $"{settings.InvokeWarmupSeconds} s of untimed saturation per path first; then {settings.InvokeRepetitions} repetition(s), alternating which path goes first. " +
                      "*Added* is gateway − direct of the same repetition; the headline figures are medians over repetitions.");
        md.AppendLine();
        md.AppendLine($"| | target (issue 7) | issue 5 | median | " + string.Join(" | ", reps.Select(r => $"rep {r}")) + " |");
        md.AppendLine("|---|---|---|---|" + string.Concat(reps.Select(_ => "---|")));
        md.AppendLine($"| added p50 at {settings.InvokeRate}/s | ≤ {TargetAddedP50} ms | ≤ {FirstTargetAddedP50} ms | **{Fmt.Ms(addedP50)} ms** | {string.Join(" | ", reps.Select(r => Fmt.Ms(AddedP(r, 50))))} |");
        md.AppendLine($"| added p99 at {settings.InvokeRate}/s | ≤ {TargetAddedP99} ms | ≤ {FirstTargetAddedP99} ms | **{Fmt.Ms(addedP99)} ms** | {string.Join(" | ", reps.Select(r => Fmt.Ms(AddedP(r, 99))))} |");
        md.AppendLine($"| saturation gateway / direct | ≥ {TargetRatio} | ≥ {FirstTargetRatio} | **{Ratio2(ratio)}** | {string.Join(" | ", reps.Select(r => Ratio2(Ratio(r))))} |");
        md.AppendLine(LatencyRow($"relay − direct p50 / p99 at {settings.InvokeRate}/s: the extra hop", "relay", "direct"));
        md.AppendLine(LatencyRow($"gateway − relay p50 / p99 at {settings.InvokeRate}/s: governance", "gateway", "relay"));
        md.AppendLine(RatioRow("saturation relay / direct: the ceiling of an HTTP gateway here", "relay", "direct"));
        md.AppendLine(RatioRow("saturation gateway / relay", "gateway", "relay"));
        md.AppendLine();
        md.AppendLine("| load | path | calls/s | p50 ms | p99 ms | max ms | failed | sender lag p99 ms | CPU ms per call (all processes of the benchmark) |");
        md.AppendLine("|---|---|---|---|---|---|---|---|---|");
        foreach (var load in new[] { "fixed rate", "saturation" })
        {
            foreach (var path in new[] { "direct", "relay", "gateway" })
            {
                var these = reps.Select(r => Get(path, load, r)).ToList();
                md.AppendLine($"| {load} | {path} | {Latency.Median(these.Select(r => r.PerSecond)):N0} | {Fmt.Ms(Latency.Median(these.Select(r => r.Latency.Percentile(50))))} | " +
                              $"{Fmt.Ms(Latency.Median(these.Select(r => r.Latency.Percentile(99))))} | {Fmt.Ms(these.Max(r => r.Latency.Max))} | {these.Sum(r => r.Failed)} | " +
                              $"{(load == "fixed rate" ? Fmt.Ms(Latency.Median(these.Select(r => r.DispatchLag.Percentile(99)))) : "–")} | " +
                              $"{Latency.Median(these.Select(CpuPerCall)):0.00} |");
            }
        }
        md.AppendLine();
        md.AppendLine("(Medians over repetitions, except max: the largest of any repetition, and failed: the sum. *Sender lag* is how late the fixed-rate sender " +
                      "dispatched calls, already included in their latency.)");
        md.AppendLine();

        var keys = runs.Where(r => r.Repetition > 0).SelectMany(r => r.Cpu.ProcessCores.Keys).Distinct().ToList();
        md.AppendLine($"**Where the CPU went** (cores busy on average, medians over repetitions; the machine has {Environment.ProcessorCount}; \"other\" is the rest of the shared machine):");
        md.AppendLine();
        md.AppendLine("| load | path | machine busy | " + string.Join(" | ", keys) + " | other |");
        md.AppendLine("|---|---|---|" + string.Concat(keys.Select(_ => "---|")) + "---|");
        foreach (var load in new[] { "fixed rate", "saturation" })
        {
            foreach (var path in new[] { "direct", "relay", "gateway" })
            {
                var these = reps.Select(r => Get(path, load, r)).ToList();
                var busy = Latency.Median(these.Select(r => r.Cpu.MachineBusyCores));
                var cells = keys.Select(k => Latency.Median(these.Select(r => r.Cpu.ProcessCores.GetValueOrDefault(k)))).ToList();
                md.AppendLine($"| {load} | {path} | {busy:0.00} | {string.Join(" | ", cells.Select(c => c.ToString("0.00", CultureInfo.InvariantCulture)))} | {Math.Max(0, busy - cells.Sum()):0.00} |");
            }
        }
        md.AppendLine();

        // Per process, so the service's own CPU per call can be read apart from the load generator's (issue 20).
        md.AppendLine("**CPU ms per call, by process** (medians over repetitions; *service* is the API host and PostgreSQL):");
        md.AppendLine();
        md.AppendLine("| load | path | " + string.Join(" | ", keys) + " | service | all |");
        md.AppendLine("|---|---|" + string.Concat(keys.Select(_ => "---|")) + "---|---|");
        foreach (var load in new[] { "fixed rate", "saturation" })
        {
            foreach (var path in new[] { "direct", "relay", "gateway" })
            {
                var these = reps.Select(r => Get(path, load, r)).ToList();
                var cells = keys.Select(k => Latency.Median(these.Select(r => CpuPerCall(r, k))));
                md.AppendLine($"| {load} | {path} | {string.Join(" | ", cells.Select(c => c.ToString("0.000", CultureInfo.InvariantCulture)))} | " +
                              $"{Latency.Median(these.Select(ServiceCpuPerCall)):0.000} | {Latency.Median(these.Select(CpuPerCall)):0.000} |");
            }
        }
        md.AppendLine();

        var gatewaySaturation = Med(r => Get("gateway", "saturation", r).PerSecond);
        md.AppendLine("**Against the limit** (issue 20). After the service's runs, `pgbench -M prepared -j 2` ran the two transactions of a governed call — admission " +
                      "(tenant pin, the check that the tool and server rows are unchanged, `audit_append` of `requested`, `allowed`, `started`) and outcome " +
                      "(tenant pin, the invocation row, `audit_append` of `completed`), each one pipeline committing as it ends, as the service sends them — " +
                      $"with {settings.InvokeCallers} clients for {settings.InvokeSaturationSeconds} s against the same cluster; one pgbench transaction is one call " +
                      "(scripts `governed-call-*.pgbench` in the raw output). Over one tenant every call waits for the chain head and commits alone; the " +
                      "service batches a tenant's writes, so it can pass that figure.");
        md.AppendLine();
        md.AppendLine("| limit | calls/s (pgbench) | failed | gateway at saturation | gateway / limit |");
        md.AppendLine("|---|---|---|---|---|");
        foreach (var limit in limits)
        {
            md.AppendLine($"| the call's transactions, {limit.Tenants} tenant(s) | {limit.CallsPerSecond:N0} | {limit.Run.Failed} | {gatewaySaturation:N0} | " +
                          $"**{gatewaySaturation / Math.Max(1e-9, limit.CallsPerSecond):0.00}** |");
        }
        md.AppendLine();

        var rowsMatch = integrity.InvocationRows == integrity.GatewaySuccesses && integrity.CompletedRows == integrity.GatewaySuccesses
                        && integrity.CompletedEvents == integrity.GatewaySuccesses;
        md.AppendLine($"**Integrity after the run** (warm-up included). `POST /audit/verify` for tenant `{Tenant}`: chain **{(integrity.ChainValid ? "valid" : "BROKEN")}**, " +
                      $"{integrity.EventsChecked:N0} events checked in {integrity.VerifyTime.TotalSeconds:0.0} s. Gateway 2xx answers: {integrity.GatewaySuccesses:N0}; " +
                      $"invocation rows: {integrity.InvocationRows:N0} ({integrity.CompletedRows:N0} `completed`); `tool.invocation.completed` events: {integrity.CompletedEvents:N0} " +
                      $"— {(rowsMatch ? "**equal**" : "**NOT equal**")}. The echo server answered {integrity.ServerToolCalls:N0} tools/call requests for " +
                      $"{integrity.DirectSuccesses:N0} direct and relay + {integrity.GatewaySuccesses:N0} gateway successes.");
        md.AppendLine();
        md.AppendLine($"**Memory.** The API host's RSS was {Fmt.Mb(RssAfterStartBytes)} once ready and peaked at **{Fmt.Mb(PeakRssBytes)}** during this benchmark " +
                      "(`VmHWM` at the end, or the highest `VmRSS` sampled every 250 ms); benchmark 5 reports it.");
        foreach (var run in runs.Where(r => r.FirstFailure is not null))
        {
            md.AppendLine();
            md.AppendLine($"First failure in {run.Path}, {run.Load} #{run.Repetition}: `{run.FirstFailure}`");
        }
        report.Add(new Section(4, "4. tools.invoke gateway vs direct", md.ToString()));

        var fixedLabel = $"{Fmt.Ms(addedP50)} ms / {Fmt.Ms(addedP99)} ms (gateway p50 {Fmt.Ms(Med(r => Get("gateway", "fixed rate", r).Latency.Percentile(50)))}, " +
                         $"direct {Fmt.Ms(Med(r => Get("direct", "fixed rate", r).Latency.Percentile(50)))} ms)";
        var satLabel = $"{ratio:0.00} × ({Med(r => Get("gateway", "saturation", r).PerSecond):N0}/s vs {Med(r => Get("direct", "saturation", r).PerSecond):N0}/s; " +
                       $"an ungoverned relay reaches {Med(r => RatioOf("relay", "direct", r)):0.00} ×)";
        report.Target(new TargetResult($"4. tools.invoke added latency p50 / p99 at {settings.InvokeRate} calls/s", $"≤ {TargetAddedP50} ms / ≤ {TargetAddedP99} ms",
            fixedLabel, addedP50 <= TargetAddedP50 && addedP99 <= TargetAddedP99));
        report.Target(new TargetResult($"4. tools.invoke saturation, {settings.InvokeCallers} callers", $"≥ {TargetRatio} × direct", satLabel, ratio >= TargetRatio));
        report.Target(new TargetResult("4. tools.invoke saturation (issues 5 and 20)", $"≥ {FirstTargetRatio} × direct", $"{ratio:0.00} ×", ratio >= FirstTargetRatio));

        // Issue 20's targets: ratios within the run.
        var p50Ratio = Med(r => Get("gateway", "fixed rate", r).Latency.Percentile(50) / Math.Max(1e-9, Get("direct", "fixed rate", r).Latency.Percentile(50)));
        report.Target(new TargetResult($"4. tools.invoke p50 at {settings.InvokeRate}/s / direct's p50 (issue 20)", $"≤ {TargetP50Ratio} ×",
            $"{p50Ratio:0.00} × ({Fmt.Ms(Med(r => Get("gateway", "fixed rate", r).Latency.Percentile(50)))} vs {Fmt.Ms(Med(r => Get("direct", "fixed rate", r).Latency.Percentile(50)))} ms)",
            p50Ratio <= TargetP50Ratio));
        var cpuRatio = Med(r => CpuPerCall(Get("gateway", "saturation", r)) / CpuPerCall(Get("relay", "saturation", r)));
        report.Target(new TargetResult("4. tools.invoke CPU per call at saturation / the relay's (issue 20)", $"≤ {TargetCpuRatio} ×",
            $"{cpuRatio:0.00} × ({Med(r => CpuPerCall(Get("gateway", "saturation", r))):0.00} vs {Med(r => CpuPerCall(Get("relay", "saturation", r))):0.00} ms, all processes)",
            cpuRatio <= TargetCpuRatio));
        var idleRatio = Med(r => CpuPerCall(Get("gateway", "fixed rate", r)) / CpuPerCall(Get("gateway", "saturation", r)));
        var serviceIdleRatio = Med(r => ServiceCpuPerCall(Get("gateway", "fixed rate", r)) / ServiceCpuPerCall(Get("gateway", "saturation", r)));
        report.Target(new TargetResult($"4. tools.invoke CPU per call at {settings.InvokeRate}/s / at saturation (issue 20)", $"≤ {TargetIdleCpuRatio} ×",
            $"{idleRatio:0.00} × all processes ({Med(r => CpuPerCall(Get("gateway", "fixed rate", r))):0.00} vs {Med(r => CpuPerCall(Get("gateway", "saturation", r))):0.00} ms); " +
            $"{serviceIdleRatio:0.00} × API host + PostgreSQL", idleRatio <= TargetIdleCpuRatio));
        foreach (var limit in limits)
        {
            report.Target(new TargetResult($"4. tools.invoke saturation / its transactions under pgbench, {limit.Tenants} tenant(s) (issue 20)", "reported",
                $"{gatewaySaturation / Math.Max(1e-9, limit.CallsPerSecond):0.00} × ({gatewaySaturation:N0}/s of {limit.CallsPerSecond:N0}/s)", null));
        }
        report.Target(new TargetResult("4. tools.invoke integrity", "chain valid, invocation rows = 2xx",
            $"{(integrity.ChainValid ? "valid" : "broken")}, {integrity.InvocationRows:N0} rows for {integrity.GatewaySuccesses:N0} 2xx", integrity.ChainValid && rowsMatch));
    }

    private static double CpuPerCall(LoadRun run) => run.CpuPerCall();

    private static double CpuPerCall(LoadRun run, string process) => run.CpuPerCall(process);

    /// <summary>The API host's and PostgreSQL's CPU per call: the service's own, without the load generator and the echo server.</summary>
    private static double ServiceCpuPerCall(LoadRun run) => CpuPerCall(run, ApiHost) + CpuPerCall(run, Postgres);
}
