using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using Dapper;
using Integrations.Benchmarks.Support;
using Integrations.Common;
using Integrations.Features.Telemetry;
using Integrations.Infrastructure.Security;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Integrations.Benchmarks.Telemetry;

/// <summary>
/// Benchmark 6: telemetry.summary over many usage rows (issue 15: p99 ≤ 50 ms on 10 million rows over 1,000 tenants).
/// The rows are made by SQL (<c>generate_series</c>) in chunks, through the same insert trigger that keeps the rollups
/// for the gateway and telemetry.ingest, so the rollups are the ones the service would have. The load stops early at
/// <c>BENCH_TELEMETRY_LOAD_SECONDS</c>, and the report says how many rows it reached.
/// </summary>
public sealed class TelemetrySummaryBenchmark(BenchSettings settings, Report report)
{
    private const double TargetP99Ms = 50.0;
    private const int Chunk = 500_000;

    private static readonly string[] Models = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5"];

    public static string Tenant(int i) => $"usage-{i:D4}";

    // Row k of tenant t: spread evenly over the 7 days before the hour the load started, 2 integrations × 3 models ×
    // 3 keys, runs of 20 requests, 2% failed, latencies 200-3,200 ms. Costs as the list prices would make them.
    private const string LoadSql = """
        INSERT INTO llm_requests (id, tenant_id, source, integration_id, api_key_id, caller, run_id, endpoint, requested_model,
            served_model, provider, prompt_tokens, completion_tokens, cost_cents, status, latency_ms, attempts, started_at, finished_at)
        SELECT gen_random_uuid(), 'usage-' || lpad((g % @Tenants)::text, 4, '0'), 'telemetry',
               md5('integration-' || (g % @Tenants) || '-' || (k / 9 % 2))::uuid, md5('key-' || (g % @Tenants) || '-' || (k / 3 % 3))::uuid,
               'bench', 'run-' || (k / 20), 'chat.completions', m, m, 'openai', 400 + k % 800, 50 + k % 300,
               ((400 + k % 800) * 250 + (50 + k % 300) * 1000) / 1000000.0, CASE WHEN k % 50 = 0 THEN 'failed' ELSE 'completed' END,
               200 + (k * 7919) % 3000, 1, t, t + interval '1 second'
        FROM generate_series(@First, @Last) AS g,
             LATERAL (SELECT g / @Tenants AS k) AS kk,
             LATERAL (SELECT (ARRAY['gpt-4o', 'gpt-4o-mini', 'claude-sonnet-4-5'])[k % 3 + 1] AS m,
                             @Start + (k * @SpanSeconds / @PerTenant) * interval '1 second' AS t) AS v
        """;

    private sealed class Sizes
    {
        public long Rows { get; init; }
        public long Hours { get; init; }
        public long RunHours { get; init; }
        public long Runs { get; init; }
        public long RowBytes { get; init; }
        public long HourBytes { get; init; }
        public long RunHourBytes { get; init; }
        public long RunBytes { get; init; }
    }

    private sealed record Case(string Name, string Query, Func<string, SummarizeLlmUsage.Query> Build)
    {
        public List<Latency> Mediator { get; } = [];
        public List<Latency> Http { get; } = [];
    }

    public async Task RunAsync(string connectionString)
    {
        var rows = settings.TelemetryRows;
        var tenants = settings.TelemetryTenants;
        var perTenant = rows / tenants;
        var end = new DateTimeOffset(DateTime.UtcNow.Date.AddHours(DateTime.UtcNow.Hour), TimeSpan.Zero);
        var start = end.AddDays(-7);
        var md = new StringBuilder();

        Console.WriteLine($"[telemetry] loading up to {rows:N0} usage rows over {tenants:N0} tenants in chunks of {Chunk:N0}...");
        var load = Stopwatch.StartNew();
        long loaded = 0;
        await using (var connection = new NpgsqlConnection(connectionString))
        {
            await connection.OpenAsync();
            while (loaded < rows && load.Elapsed.TotalSeconds < settings.TelemetryLoadSeconds)
            {
                var last = Math.Min(rows, loaded + Chunk) - 1;
                await connection.ExecuteAsync(new CommandDefinition(LoadSql, new
                {
                    Tenants = tenants,
                    First = loaded,
                    Last = last,
                    PerTenant = perTenant,
                    Start = start.UtcDateTime,
                    SpanSeconds = (long)(end - start).TotalSeconds,
                }, commandTimeout: 0));
                loaded = last + 1;
                Console.WriteLine($"[telemetry] {loaded:N0} rows, {load.Elapsed.TotalSeconds:0} s");
            }
            load.Stop();
            var analyze = Stopwatch.StartNew();
            await connection.ExecuteAsync(new CommandDefinition("VACUUM (ANALYZE) llm_usage_hours, llm_usage_run_hours, llm_run_hours, llm_requests", commandTimeout: 0));
            analyze.Stop();
            var sizes = await connection.QuerySingleAsync<Sizes>("""
                SELECT (SELECT count(*) FROM llm_requests) AS rows, (SELECT count(*) FROM llm_usage_hours) AS hours,
                       (SELECT count(*) FROM llm_usage_run_hours) AS runhours, (SELECT count(*) FROM llm_run_hours) AS runs,
                       pg_total_relation_size('llm_requests') AS rowbytes, pg_total_relation_size('llm_usage_hours') AS hourbytes,
                       pg_total_relation_size('llm_usage_run_hours') AS runhourbytes, pg_total_relation_size('llm_run_hours') AS runbytes
                """);
            md.AppendLine($"**Data.** {sizes.Rows:N0} rows in `llm_requests` over {tenants:N0} tenants ({(loaded < rows ? $"the load stopped at the {settings.TelemetryLoadSeconds} s budget, short of the {rows:N0} asked for" : "all that were asked for")}), " +
                          $"made by `INSERT … SELECT … FROM generate_series` in chunks of {Chunk:N0} through the rollup trigger, in {load.Elapsed.TotalSeconds:0} s " +
                          $"({loaded / Math.Max(0.001, load.Elapsed.TotalSeconds):N0} rows/s, rollups included), then `VACUUM (ANALYZE)` ({analyze.Elapsed.TotalSeconds:0} s). " +
                          $"Each tenant's rows are spread evenly over the 7 days before {end:yyyy-MM-dd HH}:00 UTC: 2 integrations × 3 models × 3 keys, runs of 20 requests, 2% failed. " +
                          $"Rows {Fmt.Mb(sizes.RowBytes)}; rollups `llm_usage_hours` {sizes.Hours:N0} cells ({Fmt.Mb(sizes.HourBytes)}), `llm_usage_run_hours` {sizes.RunHours:N0} cells ({Fmt.Mb(sizes.RunHourBytes)}), `llm_run_hours` {sizes.Runs:N0} cells ({Fmt.Mb(sizes.RunBytes)}).");
            md.AppendLine();
        }

        await using var service = InProcessService.Create(connectionString);
        await CostAnomalyPassAsync(service, end.AddHours(-1), tenants, md);
        var apiKeys = service.Services.GetRequiredService<ApiKeys>();
        var sample = Enumerable.Range(0, Math.Min(20, tenants)).Select(i => Tenant(i * Math.Max(1, tenants / 20))).ToArray();
        var keys = new Dictionary<string, string>();
        foreach (var tenant in sample) keys[tenant] = (await apiKeys.CreateAsync(tenant, "bench-telemetry", [Scopes.Read], CancellationToken.None)).Key;
        Console.WriteLine("[telemetry] starting the API host...");
        await using var api = await ApiProcess.StartReadyAsync(settings, connectionString, "api-telemetry");
        using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 1, UseCookies = false }) { BaseAddress = api.BaseAddress };

        var range = $"from={Uri.EscapeDataString(start.ToString("O"))}&to={Uri.EscapeDataString(end.ToString("O"))}";
        var cases = new[]
        {
            new Case("7 days, no grouping", "", _ => new SummarizeLlmUsage.Query(start, end)),
            new Case("7 days by integration and model", "group_by=integration,model", _ => new SummarizeLlmUsage.Query(start, end, ["integration", "model"])),
            new Case("7 days by day and API key", "group_by=day,api_key", _ => new SummarizeLlmUsage.Query(start, end, ["day", "api_key"])),
            new Case("7 days by hour (168 groups)", "group_by=hour&limit=200", _ => new SummarizeLlmUsage.Query(start, end, ["hour"], Limit: 200)),
            new Case("7 days by run, first 100", "group_by=run", _ => new SummarizeLlmUsage.Query(start, end, ["run"])),
        };

        async Task ViaMediator(Case c, string tenant)
        {
            var result = await service.SendAsync(c.Build(tenant), InProcessService.CallerFor(tenant));
            if (!result.IsSuccess || result.Value.Items.Count == 0 || result.Value.Items[0].Requests == 0)
                throw new InvalidOperationException($"{c.Name}: {result.Error?.Code ?? "no usage"}");
        }
        async Task ViaHttp(Case c, string tenant)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, $"/telemetry/summary?{range}&{c.Query}");
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", keys[tenant]);
            using var response = await http.SendAsync(request);
            var body = await response.Content.ReadAsStringAsync();
            if (response.StatusCode != HttpStatusCode.OK) throw new InvalidOperationException($"{c.Name} answered {(int)response.StatusCode}: {body}");
        }

        var iterations = settings.TelemetryIterations;
        Console.WriteLine($"[telemetry] {settings.Repetitions} repetitions of {iterations} x {cases.Length} cases x 2 paths, tenants rotating...");
        for (var i = 0; i < 10; i++)
        {
            foreach (var c in cases)
            {
                await ViaMediator(c, sample[i % sample.Length]);
                await ViaHttp(c, sample[i % sample.Length]);
            }
        }
        var cpu = Process.GetCurrentProcess().TotalProcessorTime;
        for (var rep = 0; rep < settings.Repetitions; rep++)
        {
            var mediator = cases.Select(_ => new Latency(iterations)).ToArray();
            var viaHttp = cases.Select(_ => new Latency(iterations)).ToArray();
            for (var i = 0; i < iterations; i++)
            {
                var tenant = sample[i % sample.Length];
                for (var c = 0; c < cases.Length; c++)
                {
                    var started = Stopwatch.GetTimestamp();
                    await ViaMediator(cases[c], tenant);
                    mediator[c].Add(started);
                    started = Stopwatch.GetTimestamp();
                    await ViaHttp(cases[c], tenant);
                    viaHttp[c].Add(started);
                }
            }
            for (var c = 0; c < cases.Length; c++)
            {
                cases[c].Mediator.Add(mediator[c]);
                cases[c].Http.Add(viaHttp[c]);
            }
            Console.WriteLine($"[telemetry] repetition {rep + 1}: " + string.Join(", ", cases.Select((c, i) => $"{c.Name} p99 {Fmt.Ms(mediator[i].Percentile(99))}/{Fmt.Ms(viaHttp[i].Percentile(99))} ms")));
        }

        md.AppendLine($"**Latency.** One caller, one request after another, the {sample.Length} sampled tenants in turn (about {perTenant:N0} rows each); each repetition times " +
                      $"{iterations:N0} requests of each case through the mediator (in process: scope, pipeline, transaction with row-level security, the rollup query) and " +
                      "through HTTP (the real host; adds Kestrel, JSON and the key check). p50 and p99 are medians over the repetitions.");
        md.AppendLine();
        md.AppendLine("| case | path | p50 ms | p99 ms | max ms | requests | target p99 ≤ 50 ms |");
        md.AppendLine("|---|---|---|---|---|---|---|");
        foreach (var c in cases)
        {
            foreach (var (path, samples) in new[] { ("mediator", c.Mediator), ("HTTP", c.Http) })
            {
                var p50 = Latency.Median(samples.Select(r => r.Percentile(50)));
                var p99 = Latency.Median(samples.Select(r => r.Percentile(99)));
                var met = p99 <= TargetP99Ms;
                md.AppendLine($"| {c.Name} | {path} | {Fmt.Ms(p50)} | {Fmt.Ms(p99)} | {Fmt.Ms(samples.Max(r => r.Max))} | {samples.Sum(r => r.Count):N0} | {Fmt.Met(met)} |");
                report.Target(new TargetResult($"6. telemetry.summary, {path}, {c.Name}", $"p99 ≤ 50 ms on {loaded / 1e6:0.#}M rows",
                    $"p99 {Fmt.Ms(p99)} ms (p50 {Fmt.Ms(p50)} ms)", met));
            }
        }
        md.AppendLine();
        report.Add(new Section(6, "6. telemetry.summary from rollups", md.ToString()));
    }

    /// <summary>The cost anomaly job's pass over the same rollups: every tenant's integrations and keys for one hour.</summary>
    private static async Task CostAnomalyPassAsync(InProcessService service, DateTimeOffset hour, int tenants, StringBuilder md)
    {
        var anomalies = service.Services.GetRequiredService<CostAnomalies>();
        var passes = new List<double>();
        var found = 0;
        for (var i = 0; i < 3; i++)
        {
            var started = Stopwatch.GetTimestamp();
            found += await anomalies.JudgeHourAsync(hour, CancellationToken.None);
            passes.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        }
        Console.WriteLine($"[telemetry] cost anomaly passes: {string.Join(", ", passes.Select(Fmt.Ms))} ms");
        md.AppendLine($"**Cost anomaly pass.** The `spend.cost_anomalies` job judging {hour:yyyy-MM-dd HH}:00 UTC for every integration and API key " +
                      $"of the {tenants:N0} tenants (that hour's rollup cells and the same hour on the 7 days before, across tenants): " +
                      $"{string.Join(", ", passes.Select(Fmt.Ms))} ms for 3 passes; {found} anomalies (the load spreads spend evenly, so none are expected).");
        md.AppendLine();
    }
}
