using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Dapper;
using Integrations.Benchmarks.Support;
using Integrations.Common;
using Integrations.Infrastructure.Security;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Integrations.Benchmarks.LlmGateway;

/// <summary>
/// Benchmark 8 (issue 14): a fast fake OpenAI server (<see cref="FakeOpenAiServer"/>) reached three ways in one run,
/// with the same chat-completion bodies over HTTP: directly; through our <c>/v1/chat/completions</c> on the real API
/// host (API key, routing by <c>integration/model</c>, the governed call: policy, the key from the vault, audit, the
/// usage row with tokens and cost); and through the Portkey gateway 1.15.2 under node (headers
/// <c>x-portkey-provider: openai</c> and <c>x-portkey-custom-host</c>; it persists nothing). Plain and streaming
/// requests, each at a fixed rate and at saturation (<see cref="GatewayComparison"/>); streaming calls time their
/// first byte. Then our tenant's audit chain is verified and its usage rows counted against our successes.
/// </summary>
public sealed class LlmGatewayBenchmark(BenchSettings settings, Report report)
{
    public const string Tenant = "bench-llm-gateway";

    private const string Direct = "direct", Ours = "ours (/v1)", Portkey = "Portkey";
    private const string Integration = "bench", Model = "gpt-4o-mini";

    // Issue 14's targets, all ratios within one run.
    private const double TargetAddedOverPortkey = 0.5, TargetSaturationOverDirect = 0.5, TargetSaturationOverPortkey = 5;

    private static readonly GatewayLoad AtRate = new(LoadDriver.FixedRate, Saturated: false);
    private static readonly GatewayLoad AtRateStreaming = new($"{LoadDriver.FixedRate}, streaming", Saturated: false, Streaming: true);
    private static readonly GatewayLoad Saturation = new(LoadDriver.Saturation, Saturated: true);
    private static readonly GatewayLoad SaturationStreaming = new($"{LoadDriver.Saturation}, streaming", Saturated: true, Streaming: true);

    public async Task RunAsync(string connectionString)
    {
        await using var provider = new FakeOpenAiServer();
        await provider.StartAsync();
        var adminKey = await InProcessService.MintKeyAsync(connectionString, Tenant, "bench-llm-admin", Scopes.Admin);
        var llmKey = await InProcessService.MintKeyAsync(connectionString, Tenant, "bench-llm-caller", Scopes.LlmInvoke);

        await using var api = await ApiProcess.StartReadyAsync(settings, connectionString, "api-llm-gateway",
            new Dictionary<string, string> { ["Integrations__Network__EgressAllow__0"] = "127.0.0.1" });
        using var admin = new HttpClient { BaseAddress = api.BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        admin.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", adminKey);
        await RegisterAsync(admin, provider.BaseUrl);

        var portkeyPort = ChildProcess.FreePort();
        await using var portkey = NodePeer.Start(settings, "@portkey-ai/gateway/build/start-server.js",
            [$"--port={portkeyPort}", "--headless"], "portkey");
        var portkeyAddress = new Uri($"http://127.0.0.1:{portkeyPort}");
        using (var probe = new HttpClient { Timeout = TimeSpan.FromSeconds(5) })
        {
            await portkey.WaitUntilAsync("the Portkey gateway", async () => (await probe.GetAsync(portkeyAddress)).IsSuccessStatusCode, TimeSpan.FromSeconds(60));
        }

        using var directHttp = Client(null, FakeOpenAiServer.Key);
        using var ourHttp = Client(null, llmKey);
        using var portkeyHttp = Client(new Dictionary<string, string>
        {
            ["x-portkey-provider"] = "openai",
            ["x-portkey-custom-host"] = provider.BaseUrl.ToString(),
        }, FakeOpenAiServer.Key);
        var ourUrl = new Uri(api.BaseAddress, "/v1/chat/completions");
        var portkeyUrl = new Uri(portkeyAddress, "/v1/chat/completions");

        var successes = new long[3];
        var paths = new List<GatewayPath>
        {
            Path(Direct, directHttp, provider.ChatCompletions, Model, successes, 0),
            Path(Ours, ourHttp, ourUrl, $"{Integration}/{Model}", successes, 1),
            Path(Portkey, portkeyHttp, portkeyUrl, Model, successes, 2),
        };
        // One call of each kind per path before anything is timed: a wrong route fails here with its answer, not as a column of failures.
        foreach (var path in paths)
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            if (!(await path.Call(timeout.Token)).Ok || !(await path.Streaming!(timeout.Token)).Ok)
            {
                throw new InvalidOperationException($"{path.Name} did not answer a chat completion (see the logs in the results folder)");
            }
        }

        var postmaster = await LoadDriver.PostmasterPidAsync(connectionString);
        var cpu = new CpuMeter(() => new Dictionary<string, IReadOnlyList<int>>
        {
            ["load generator + fake provider"] = [Environment.ProcessId],
            ["API host"] = [api.Pid],
            ["PostgreSQL"] = CpuMeter.ProcessTree(postmaster),
            [Portkey] = CpuMeter.ProcessTree(portkey.Pid),
        });
        var driver = new LoadDriver("llm-gateway", settings.GatewayRate, settings.GatewayRateSeconds, settings.GatewayCallers);
        var comparison = new GatewayComparison(driver, settings, cpu, paths, [AtRate, AtRateStreaming, Saturation, SaturationStreaming], connectionString);
        await comparison.RunAsync("llm-gateway");

        var memory = (Api: api.Memory().Peak, Portkey: ProcessMemory.Read(portkey.Pid).Peak);
        var integrity = await CheckIntegrityAsync(admin, connectionString, Interlocked.Read(ref successes[1]),
            Interlocked.Read(ref successes[0]) + Interlocked.Read(ref successes[2]), provider.Completions);
        Describe(comparison, integrity, memory);
    }

    /// <summary>The provider's key in the vault, and an enabled <c>openai_compatible</c> integration on the fake provider, through the API.</summary>
    private static async Task RegisterAsync(HttpClient admin, Uri baseUrl)
    {
        using var stored = await admin.PostAsJsonAsync("/credentials", new { name = "bench-provider-key", type = "api_key", secret = FakeOpenAiServer.Key });
        var credential = await stored.Content.ReadAsStringAsync();
        if (!stored.IsSuccessStatusCode) throw new InvalidOperationException($"storing the provider key answered {(int)stored.StatusCode}: {credential}");
        var reference = JsonDocument.Parse(credential).RootElement.GetProperty("reference").GetString();
        using var created = await admin.PostAsJsonAsync("/integrations", new { name = Integration, provider = "openai_compatible", base_url = baseUrl.ToString(), credential_ref = reference });
        var integration = await created.Content.ReadAsStringAsync();
        if (!created.IsSuccessStatusCode) throw new InvalidOperationException($"creating the integration answered {(int)created.StatusCode}: {integration}");
        var id = JsonDocument.Parse(integration).RootElement.GetProperty("id").GetGuid();
        using var enabled = await admin.PostAsync($"/integrations/{id}/enable", null);
        if (!enabled.IsSuccessStatusCode) throw new InvalidOperationException($"enabling the integration answered {(int)enabled.StatusCode}: {await enabled.Content.ReadAsStringAsync()}");
    }

    private static HttpClient Client(IReadOnlyDictionary<string, string>? headers, string bearer)
    {
        var client = new HttpClient(new SocketsHttpHandler { UseCookies = false, PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5) }) { Timeout = TimeSpan.FromSeconds(30) };
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", bearer);
        foreach (var (name, value) in headers ?? new Dictionary<string, string>()) client.DefaultRequestHeaders.Add(name, value);
        return client;
    }

    /// <summary>
    /// The plain and the streaming chat completion of one path: the same bodies everywhere but the model's name (ours
    /// routes <c>integration/model</c>); streaming asks for the usage chunk as the official SDKs do.
    /// </summary>
    private static GatewayPath Path(string name, HttpClient client, Uri url, string model, long[] successes, int counter)
    {
        var messages = new[] { new { role = "user", content = "Say: benchmark payload" } };
        var plain = JsonSerializer.SerializeToUtf8Bytes(new { model, messages, max_tokens = 16 });
        var streaming = JsonSerializer.SerializeToUtf8Bytes(new { model, messages, max_tokens = 16, stream = true, stream_options = new { include_usage = true } });

        Call viaPlain = async ct =>
        {
            using var content = Json(plain);
            using var response = await client.PostAsync(url, content, ct);
            var body = await response.Content.ReadAsStringAsync(ct);
            var ok = response.StatusCode == HttpStatusCode.OK && body.Contains(FakeOpenAiServer.Answer, StringComparison.Ordinal);
            if (ok) Interlocked.Increment(ref successes[counter]);
            return ok;
        };
        Call viaStreaming = async ct =>
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = Json(streaming) };
            using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct);
            await using var stream = await response.Content.ReadAsStreamAsync(ct);
            var buffer = new byte[8192];
            using var received = new MemoryStream();
            long firstByte = 0;
            int read;
            while ((read = await stream.ReadAsync(buffer, ct)) > 0)
            {
                if (firstByte == 0) firstByte = Stopwatch.GetTimestamp();
                received.Write(buffer, 0, read);
            }
            var text = Encoding.UTF8.GetString(received.GetBuffer(), 0, (int)received.Length);
            var ok = response.StatusCode == HttpStatusCode.OK && text.Contains("payload", StringComparison.Ordinal)
                                                              && text.TrimEnd().EndsWith("data: [DONE]", StringComparison.Ordinal);
            if (ok) Interlocked.Increment(ref successes[counter]);
            return new Answer(ok, firstByte);
        };
        return new GatewayPath(name, viaPlain, viaStreaming);
    }

    private static ByteArrayContent Json(byte[] body)
    {
        var content = new ByteArrayContent(body);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        return content;
    }

    private sealed record Integrity(
        bool ChainValid, long EventsChecked, TimeSpan VerifyTime, long OurSuccesses, long UsageRows, long CompletedRows, long CompletedEvents,
        long OtherSuccesses, long ProviderCompletions);

    /// <summary>
    /// Our tenant's chain verified, and its usage rows and <c>llm.request.completed</c> events counted against our
    /// successes. A stream's row is written as the stream ends, after the client has its last byte: the count is read
    /// again until it stops changing (at most 10 s).
    /// </summary>
    private static async Task<Integrity> CheckIntegrityAsync(HttpClient admin, string connectionString, long ours, long others, long providerCompletions)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        async Task<(long Total, long Completed)> RowsAsync() => await connection.QuerySingleAsync<(long, long)>(
            "SELECT count(*), count(*) FILTER (WHERE status = 'completed') FROM llm_requests WHERE tenant_id = @Tenant", new { Tenant });
        var rows = await RowsAsync();
        for (var deadline = Stopwatch.StartNew(); rows.Completed < ours && deadline.Elapsed < TimeSpan.FromSeconds(10);)
        {
            await Task.Delay(200);
            rows = await RowsAsync();
        }
        var events = await connection.ExecuteScalarAsync<long>(
            "SELECT count(*) FROM audit_events WHERE tenant_id = @Tenant AND action = 'llm.request.completed'", new { Tenant });
        var verified = await AuditVerify.RunAsync(admin);
        var integrity = new Integrity(verified.Valid, verified.EventsChecked, verified.Took, ours, rows.Total, rows.Completed, events, others, providerCompletions);
        Console.WriteLine($"[llm-gateway] audit chain valid: {integrity.ChainValid} ({integrity.EventsChecked} events); ours 2xx {ours}, usage rows {rows.Total} " +
                          $"({rows.Completed} completed), completed events {events}; provider completions {providerCompletions} = direct and Portkey {others} + ours {ours}?");
        return integrity;
    }

    private void Describe(GatewayComparison runs, Integrity integrity, (long Api, long Portkey) memory)
    {
        var rate = settings.GatewayRate;
        var md = new StringBuilder();
        md.AppendLine("**What runs.** A fake OpenAI provider (`POST /v1/chat/completions` in Kestrel on 127.0.0.1, in the load generator's process: one prepared JSON " +
                      "answer, or the same answer as server-sent events — role, three content chunks, finish, usage, `[DONE]` — each chunk flushed), reached over HTTP " +
                      $"three ways with the same bodies: *{Direct}*; *{Ours}*, `POST /v1/chat/completions` on the API host (its own process, Production settings) with an " +
                      $"`llm:invoke` key, model `{Integration}/{Model}`: key and scope, routing to the tenant's `openai_compatible` integration, the governed call — " +
                      "policy, the provider key from the vault (access logged), audit `requested` + `allowed` + `started`, the provider call, audit `completed` + the " +
                      "usage row with tokens and cost (for streams, written as the stream ends; no limits configured); and " +
                      $"*{Portkey}*, `@portkey-ai/gateway` 1.15.2 (`--headless`) under node {NodePeer.NodeVersion()}, routed with `x-portkey-provider: openai` and " +
                      "`x-portkey-custom-host` (nothing persisted). Streaming requests ask for `stream_options.include_usage` as the official SDKs do; their *first byte* " +
                      "is when the first bytes of the answer's body reached the client. " +
                      $"*Fixed rate*: {rate} requests/s for {settings.GatewayRateSeconds} s per path and kind, open loop (latency and first byte from each request's due time). " +
                      $"*Saturation*: {settings.GatewayCallers} callers for {settings.GatewaySaturationSeconds} s per path and kind after a 0.5 s ramp. " +
                      $"{settings.GatewayWarmupSeconds} s of untimed saturation per path and kind first; {settings.GatewayRepetitions} repetition(s), alternating which path goes first. " +
                      "*Added* is a gateway's figure minus direct's in the same repetition; headline figures are medians over repetitions.");
        md.AppendLine();
        md.AppendLine("| | target (issue 14) | median | " + string.Join(" | ", runs.Repetitions.Select(r => $"rep {r}")) + " |");
        md.AppendLine("|---|---|---|" + string.Concat(runs.Repetitions.Select(_ => "---|")));
        string Row(string label, string target, Func<int, double> perRepetition, Func<double, string> format) =>
            $"| {label} | {target} | **{format(runs.Median(perRepetition))}** | {string.Join(" | ", runs.Repetitions.Select(r => format(perRepetition(r))))} |";
        string Times(double value) => value.ToString("0.00", CultureInfo.InvariantCulture) + " ×";
        string Ms(double value) => Fmt.Ms(value) + " ms";
        double Over(string path, GatewayLoad load, Func<LoadRun, double> figure, int r) => figure(runs.Get(path, load, r)) - figure(runs.Get(Direct, load, r));
        double Ratio(string path, string baseline, GatewayLoad load, int r) =>
            runs.Get(path, load, r).PerSecond / Math.Max(1e-9, runs.Get(baseline, load, r).PerSecond);
        foreach (var (name, figure) in new (string, Func<LoadRun, double>)[] { ("p50", GatewayComparison.P50), ("p99", GatewayComparison.P99) })
        {
            md.AppendLine(Row($"ours: added {name} at {rate}/s", $"≤ {TargetAddedOverPortkey} × Portkey's", r => Over(Ours, AtRate, figure, r), Ms));
            md.AppendLine(Row($"Portkey: added {name} at {rate}/s", "", r => Over(Portkey, AtRate, figure, r), Ms));
        }
        foreach (var (name, figure) in new (string, Func<LoadRun, double>)[] { ("p50", GatewayComparison.FirstByteP50), ("p99", GatewayComparison.FirstByteP99) })
        {
            md.AppendLine(Row($"ours: added first byte {name}, streaming at {rate}/s", "≤ Portkey's", r => Over(Ours, AtRateStreaming, figure, r), Ms));
            md.AppendLine(Row($"Portkey: added first byte {name}, streaming at {rate}/s", "", r => Over(Portkey, AtRateStreaming, figure, r), Ms));
        }
        md.AppendLine(Row("saturation ours / direct", $"≥ {TargetSaturationOverDirect}", r => Ratio(Ours, Direct, Saturation, r), Times));
        md.AppendLine(Row("saturation ours / Portkey", $"≥ {TargetSaturationOverPortkey}", r => Ratio(Ours, Portkey, Saturation, r), Times));
        md.AppendLine(Row("*saturation, streaming: ours / direct*", "", r => Ratio(Ours, Direct, SaturationStreaming, r), Times));
        md.AppendLine(Row("*saturation, streaming: ours / Portkey*", "", r => Ratio(Ours, Portkey, SaturationStreaming, r), Times));
        md.AppendLine(Row("*saturation Portkey / direct*", "", r => Ratio(Portkey, Direct, Saturation, r), Times));
        md.AppendLine();
        md.AppendLine(runs.LoadTable("request"));
        md.AppendLine();
        md.AppendLine(runs.CpuTable("request"));
        md.AppendLine();
        md.AppendLine(runs.WaitsTable(Ours));
        md.AppendLine();
        var rowsMatch = integrity.CompletedRows == integrity.OurSuccesses && integrity.UsageRows == integrity.OurSuccesses && integrity.CompletedEvents == integrity.OurSuccesses;
        md.AppendLine($"**Integrity after the run** (warm-up included). `POST /audit/verify` for tenant `{Tenant}`: chain **{(integrity.ChainValid ? "valid" : "BROKEN")}**, " +
                      $"{integrity.EventsChecked:N0} events checked in {integrity.VerifyTime.TotalSeconds:0.0} s. Our successful requests: {integrity.OurSuccesses:N0}; usage rows: " +
                      $"{integrity.UsageRows:N0} ({integrity.CompletedRows:N0} `completed`); `llm.request.completed` events: {integrity.CompletedEvents:N0} — " +
                      $"{(rowsMatch ? "**equal**" : "**NOT equal**")}. The provider answered {integrity.ProviderCompletions:N0} completions for {integrity.OtherSuccesses:N0} " +
                      $"direct and Portkey + {integrity.OurSuccesses:N0} of ours.");
        md.AppendLine();
        md.AppendLine($"**Memory** (peak RSS over the stage): API host {Fmt.Mb(memory.Api)}, Portkey {Fmt.Mb(memory.Portkey)}.");
        foreach (var failure in runs.Failures())
        {
            md.AppendLine();
            md.AppendLine(failure);
        }
        report.Add(new Section(8, "8. LLM gateway (/v1) vs direct and Portkey", md.ToString()));

        foreach (var (name, figure) in new (string, Func<LoadRun, double>)[] { ("p50", GatewayComparison.P50), ("p99", GatewayComparison.P99) })
        {
            var ours = runs.Added(Ours, Direct, AtRate, figure);
            var peer = runs.Added(Portkey, Direct, AtRate, figure);
            report.Target(new TargetResult($"8. LLM gateway added {name} at {rate}/s (issue 14)", $"≤ {TargetAddedOverPortkey} × Portkey's",
                $"{Fmt.Ms(ours)} ms vs Portkey {Fmt.Ms(peer)} ms", ours <= TargetAddedOverPortkey * peer));
        }
        foreach (var (name, figure) in new (string, Func<LoadRun, double>)[] { ("p50", GatewayComparison.FirstByteP50), ("p99", GatewayComparison.FirstByteP99) })
        {
            var ours = runs.Added(Ours, Direct, AtRateStreaming, figure);
            var peer = runs.Added(Portkey, Direct, AtRateStreaming, figure);
            report.Target(new TargetResult($"8. LLM gateway added first byte {name}, streaming at {rate}/s (issue 14)", "≤ Portkey's",
                $"{Fmt.Ms(ours)} ms vs Portkey {Fmt.Ms(peer)} ms", ours <= peer));
        }
        var overDirect = runs.Ratio(Ours, Direct, Saturation, GatewayComparison.PerSecond);
        var overPortkey = runs.Ratio(Ours, Portkey, Saturation, GatewayComparison.PerSecond);
        report.Target(new TargetResult($"8. LLM gateway saturation, {settings.GatewayCallers} callers (issue 14)",
            $"≥ {TargetSaturationOverDirect} × direct, ≥ {TargetSaturationOverPortkey} × Portkey",
            $"{overDirect:0.00} × direct, {overPortkey:0.00} × Portkey ({runs.Median(Ours, Saturation, GatewayComparison.PerSecond):N0}/s vs direct " +
            $"{runs.Median(Direct, Saturation, GatewayComparison.PerSecond):N0}/s, Portkey {runs.Median(Portkey, Saturation, GatewayComparison.PerSecond):N0}/s)",
            overDirect >= TargetSaturationOverDirect && overPortkey >= TargetSaturationOverPortkey));
        report.Target(new TargetResult("8. LLM gateway integrity", "chain valid, usage rows = successes",
            $"{(integrity.ChainValid ? "valid" : "broken")}, {integrity.CompletedRows:N0} rows for {integrity.OurSuccesses:N0} successes", integrity.ChainValid && rowsMatch));
    }
}
