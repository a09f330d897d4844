using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using Dapper;
using Integrations.Benchmarks.Support;
using Integrations.Common;
using Integrations.Features.Audit;
using Integrations.Features.Integrations;
using Integrations.Infrastructure.Security;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Integrations.Benchmarks.Audit;

/// <summary>
/// Benchmark 2: sustained audited writes (integrations.create: the integration row and its hash-chained audit
/// event commit in one transaction) from N concurrent callers, then proof that nothing was lost: every tenant's
/// chain verifies (audit.verify) and the audit rows equal the writes that were answered with success.
/// Three runs: many tenants through the mediator, one tenant through the mediator (every writer queues on that
/// tenant's chain head), and many tenants through HTTP, during which the API host's peak RSS is taken.
/// </summary>
public sealed class AuditThroughputBenchmark(BenchSettings settings, Report report)
{
    private const double TargetPerSecond = 2_000;

    public long HttpPeakRssBytes { get; private set; }

    private sealed record RunResult(
        string Name, string Path, int Tenants, int Callers, TimeSpan Measured,
        long Ok, long Failed, long Exceptions, Latency Latency, long[] PerSecond,
        long ExpectedEvents, long AuditRows, long IntegrationRows, int ChainsValid, int Chains, TimeSpan VerifyTime,
        CpuMeter.Usage Cpu, string? FirstFailure)
    {
        public double PerSecondRate => Ok / Measured.TotalSeconds;
    }

    /// <summary>One write by caller <c>caller</c> to tenant <c>tenant</c>; true when answered with success.</summary>
    private delegate Task<bool> Write(int caller, int tenant, long sequence);

    public async Task RunAsync(string connectionString)
    {
        await using var service = InProcessService.Create(connectionString);
        var postmaster = await PostmasterPidAsync(connectionString);
        var runs = new List<RunResult>();

        // The limit first, on the same cluster: what PostgreSQL itself allows for the same transaction (issue 20).
        BareTransactionLimit.Result? limit = null;
        if (settings.AuditRuns.Contains("limit"))
        {
            limit = await new BareTransactionLimit(settings).RunAsync(connectionString, settings.OutputDirectory, settings.AuditSeconds);
        }

        var many = Tenants("audit-m", settings.AuditTenants);
        if (settings.AuditRuns.Contains("mediator-many")) runs.Add(await RunAsync("many tenants", "mediator", connectionString, service, many, settings.AuditSeconds, postmaster, null,
            (caller, tenant, seq) => CreateViaMediator(service, many[tenant], caller, seq)));

        // Side by side with the same service without prepared statements (the default before this benchmark).
        if (settings.AuditRuns.Contains("mediator-many-unprepared"))
        {
            await using var unprepared = InProcessService.Create(connectionString + ";Max Auto Prepare=0");
            var tenants = Tenants("audit-u", settings.AuditTenants);
            runs.Add(await RunAsync("many tenants, Max Auto Prepare=0", "mediator", connectionString, unprepared, tenants, settings.AuditCompareSeconds, postmaster, null,
                (caller, tenant, seq) => CreateViaMediator(unprepared, tenants[tenant], caller, seq)));
        }

        var single = Tenants("audit-s", 1);
        if (settings.AuditRuns.Contains("mediator-one")) runs.Add(await RunAsync("one tenant", "mediator", connectionString, service, single, settings.AuditSingleTenantSeconds, postmaster, null,
            (caller, tenant, seq) => CreateViaMediator(service, single[tenant], caller, seq)));

        var overHttp = Tenants("audit-h", settings.AuditTenants);
        if (settings.AuditRuns.Contains("http-many"))
        {
            await using var api = await ApiProcess.StartReadyAsync(settings, connectionString, "api-audit");
            var keys = new List<string>();
            foreach (var tenant in overHttp)
            {
                keys.Add((await service.Services.GetRequiredService<ApiKeys>().CreateAsync(tenant, "bench-audit", [Scopes.Write], CancellationToken.None)).Key);
            }
            using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = settings.AuditCallers, UseCookies = false })
            {
                BaseAddress = api.BaseAddress,
                Timeout = TimeSpan.FromSeconds(30),
            };
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
            runs.Add(await RunAsync("many tenants", "HTTP", connectionString, service, overHttp, settings.AuditHttpSeconds, postmaster, api.Pid,
                (caller, tenant, seq) => CreateViaHttp(http, keys[tenant], caller, seq)));
            await sampling.CancelAsync();
            await sampler;
            HttpPeakRssBytes = Math.Max(api.Memory().Peak, peakSampled);
        }

        report.Add(new Section(2, "2. Audited write throughput and integrity", Describe(runs) + DescribeLimit(runs, limit)));
        if (limit is not null)
        {
            foreach (var run in runs.Where(r => r.Tenants > 1 && !r.Name.Contains("Max Auto Prepare", StringComparison.Ordinal)))
            {
                var ratio = run.PerSecondRate / limit.TransactionsPerSecond;
                var floor = run.Path == "HTTP" ? 0.5 : 0.7;
                report.Target(new TargetResult($"2. audited writes, {run.Path} / the bare transaction (pgbench, same cluster, same run)",
                    $"≥ {floor:0.0} × the limit", $"{ratio:0.00} × ({run.PerSecondRate:N0}/s of {limit.TransactionsPerSecond:N0}/s)", ratio >= floor));
            }
        }
        foreach (var run in runs)
        {
            var label = $"2. audited writes, {run.Path}, {run.Name} ({run.Callers} callers)";
            var lossless = run.ChainsValid == run.Chains && run.AuditRows == run.ExpectedEvents && run.IntegrationRows == run.ExpectedEvents;
            var rateMet = run.PerSecondRate >= TargetPerSecond;
            var (target, counts) = (run.Tenants > 1, run.Name.Contains("Max Auto Prepare", StringComparison.Ordinal)) switch
            {
                (_, true) => ("comparison: prepared statements off", false),
                (true, _) => ("≥ 2,000 writes/s", true),
                _ => ("contrast: one tenant's writers queue on its chain head", false),
            };
            report.Target(new TargetResult(label, target, $"{run.PerSecondRate:N0}/s, p99 {Fmt.Ms(run.Latency.Percentile(99))} ms", counts ? rateMet : null));
            report.Target(new TargetResult(label, "nothing lost: chains intact, audit rows = 2xx",
                $"{run.ChainsValid}/{run.Chains} chains valid, {run.AuditRows:N0} audit rows for {run.ExpectedEvents:N0} successes", lossless));
        }
    }

    private static string[] Tenants(string prefix, int count) => Enumerable.Range(0, count).Select(i => $"{prefix}-{i:D3}").ToArray();

    private static async Task<bool> CreateViaMediator(InProcessService service, string tenant, int caller, long seq)
    {
        var result = await service.SendAsync(new CreateIntegration.Command($"w-{caller}-{seq}", "openai"), InProcessService.CallerFor(tenant));
        return result.IsSuccess;
    }

    private static async Task<bool> CreateViaHttp(HttpClient http, string key, int caller, long seq)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/integrations")
        {
            Content = JsonContent.Create(new { name = $"w-{caller}-{seq}", provider = "openai" }),
        };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        using var response = await http.SendAsync(request);
        await response.Content.LoadIntoBufferAsync();
        return response.StatusCode == HttpStatusCode.Created;
    }

    private async Task<RunResult> RunAsync(
        string name, string path, string connectionString, InProcessService service, string[] tenants, int seconds,
        int postmaster, int? apiPid, Write write)
    {
        var callers = settings.AuditCallers;
        Console.WriteLine($"[audit] {path}, {name}: {callers} callers over {tenants.Length} tenant(s), {settings.AuditWarmupSeconds} s warm-up + {seconds} s...");
        var successes = new long[tenants.Length];
        var perSecond = new long[seconds + 2];
        var latencies = Enumerable.Range(0, callers).Select(_ => new Latency(4096)).ToArray();
        long ok = 0, failed = 0, exceptions = 0;
        string? firstFailure = null;

        var frequency = Stopwatch.Frequency;
        var start = Stopwatch.GetTimestamp();
        var measureFrom = start + settings.AuditWarmupSeconds * frequency;
        var end = measureFrom + seconds * frequency;
        var cpu = new CpuMeter(() =>
        {
            var groups = new Dictionary<string, IReadOnlyList<int>>
            {
                ["load generator" + (apiPid is null ? " + service (in process)" : "")] = [Environment.ProcessId],
                ["PostgreSQL"] = CpuMeter.ProcessTree(postmaster),
            };
            if (apiPid is { } pid) groups["API host"] = [pid];
            return groups;
        });
        CpuMeter.Snapshot? cpuBefore = null;
        var cpuGate = new Lock();

        var workers = Enumerable.Range(0, callers).Select(caller => Task.Run(async () =>
        {
            var tenant = caller % tenants.Length;
            long seq = 0;
            while (true)
            {
                var t0 = Stopwatch.GetTimestamp();
                if (t0 >= end) break;
                if (t0 >= measureFrom && cpuBefore is null)
                {
                    lock (cpuGate) cpuBefore ??= cpu.Take();
                }
                bool success;
                try
                {
                    success = await write(caller, tenant, seq++);
                }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException or NpgsqlException or InvalidOperationException or TimeoutException)
                {
                    Interlocked.Increment(ref exceptions);
                    Interlocked.CompareExchange(ref firstFailure, $"{e.GetType().Name}: {e.Message}", null);
                    continue;
                }
                var t1 = Stopwatch.GetTimestamp();
                if (success) Interlocked.Increment(ref successes[tenant]);
                if (t0 < measureFrom || t1 > end) continue; // warm-up and the request that straddles the end are not timed
                latencies[caller].Add((t1 - t0) * 1000.0 / frequency);
                if (success)
                {
                    Interlocked.Increment(ref ok);
                    Interlocked.Increment(ref perSecond[(t1 - measureFrom) / frequency]);
                }
                else
                {
                    Interlocked.Increment(ref failed);
                    Interlocked.CompareExchange(ref firstFailure, "a write was answered with a failure", null);
                }
            }
        })).ToArray();
        await Task.WhenAll(workers);
        var cpuAfter = cpu.Take();
        var measured = TimeSpan.FromSeconds(seconds);
        var usage = CpuMeter.Between(cpuBefore ?? cpuAfter, cpuAfter, measured);

        var latency = new Latency(latencies.Sum(l => l.Count));
        foreach (var l in latencies) latency.AddRange(l);

        // Integrity: every chain recomputed by audit.verify, and the rows counted against the successes.
        var verify = Stopwatch.StartNew();
        var valid = 0;
        long checkedEvents = 0;
        foreach (var tenant in tenants)
        {
            var result = await service.SendAsync(new VerifyAuditChain.Query(), InProcessService.CallerFor(tenant));
            if (result.IsSuccess && result.Value.Valid) valid++;
            if (result.IsSuccess) checkedEvents += result.Value.EventsChecked;
        }
        verify.Stop();
        long auditRows, integrationRows;
        await using (var connection = new NpgsqlConnection(connectionString))
        {
            auditRows = await connection.ExecuteScalarAsync<long>(
                "SELECT count(*) FROM audit_events WHERE tenant_id = ANY(@tenants) AND action = 'integrations.create'", new { tenants });
            integrationRows = await connection.ExecuteScalarAsync<long>(
                "SELECT count(*) FROM cus_integrations WHERE tenant_id = ANY(@tenants)", new { tenants });
        }
        var expected = successes.Sum();
        if (checkedEvents != auditRows) firstFailure ??= $"audit.verify checked {checkedEvents} events but {auditRows} rows exist";

        var result2 = new RunResult(name, path, tenants.Length, callers, measured, ok, failed, exceptions, latency, perSecond[..seconds],
            expected, auditRows, integrationRows, valid, tenants.Length, verify.Elapsed, usage, firstFailure);
        Console.WriteLine($"[audit] {path}, {name}: {result2.PerSecondRate:N0}/s, p50 {Fmt.Ms(latency.Percentile(50))} p99 {Fmt.Ms(latency.Percentile(99))} ms, " +
                          $"{valid}/{tenants.Length} chains valid, audit rows {auditRows} / successes {expected}, failed {failed}, exceptions {exceptions}" +
                          (firstFailure is null ? "" : $" ({firstFailure})"));
        return result2;
    }

    private string Describe(IReadOnlyList<RunResult> runs)
    {
        var md = new StringBuilder();
        md.AppendLine($"**What runs.** {settings.AuditCallers} concurrent callers, each sending `integrations.create` (a new integration row and its hash-chained audit event, " +
                      "committed in one transaction by the audit behavior) as fast as it is answered. " +
                      $"Each run starts with {settings.AuditWarmupSeconds} s of warm-up whose writes are not timed but are counted for integrity. " +
                      "*Mediator* runs call `IMediator.Send` in a fresh scope per write, in this process; the *HTTP* run posts `POST /integrations` to the real API host " +
                      "(its own process, Kestrel, API-key check) over keep-alive connections from a client on the same 2 cores. " +
                      "With many tenants every caller has its own tenant (no two writers share a chain head); with one tenant all callers queue on its chain head row. " +
                      $"The row marked `Max Auto Prepare=0` is the same many-tenant run ({settings.AuditCompareSeconds} s) with the service's prepared statements turned off, " +
                      "as the service ran before this benchmark: a side-by-side of that change in one run.");
        md.AppendLine();
        md.AppendLine("| path | tenants | callers | measured | writes/s | p50 ms | p99 ms | max ms | slowest second | fastest second | failures |");
        md.AppendLine("|---|---|---|---|---|---|---|---|---|---|---|");
        foreach (var r in runs)
        {
            md.AppendLine($"| {r.Path}{Variant(r)} | {r.Tenants} | {r.Callers} | {r.Measured.TotalSeconds:0} s | **{r.PerSecondRate:N0}** | {Fmt.Ms(r.Latency.Percentile(50))} | {Fmt.Ms(r.Latency.Percentile(99))} | " +
                          $"{Fmt.Ms(r.Latency.Max)} | {r.PerSecond.DefaultIfEmpty().Min():N0} | {r.PerSecond.DefaultIfEmpty().Max():N0} | {r.Failed + r.Exceptions} |");
        }
        md.AppendLine();
        md.AppendLine("**Integrity after each run.** `audit.verify` (the same query as `POST /audit/verify`) recomputes every hash of every tenant's chain, checks each link " +
                      "and that the chain ends at its head row; the rows are then counted against the writes that were answered with success (warm-up included).");
        md.AppendLine();
        md.AppendLine("| path | tenants | chains valid | successes (2xx) | audit rows | integration rows | verify time |");
        md.AppendLine("|---|---|---|---|---|---|---|");
        foreach (var r in runs)
        {
            md.AppendLine($"| {r.Path}{Variant(r)} | {r.Tenants} | {r.ChainsValid}/{r.Chains} | {r.ExpectedEvents:N0} | {r.AuditRows:N0} | {r.IntegrationRows:N0} | {r.VerifyTime.TotalSeconds:0.0} s |");
        }
        foreach (var r in runs.Where(r => r.FirstFailure is not null))
        {
            md.AppendLine();
            md.AppendLine($"First failure in the {r.Path} {r.Name} run: `{r.FirstFailure}`");
        }
        md.AppendLine();
        md.AppendLine($"**Where the CPU went** (cores busy on average over the measured window; the machine has {Environment.ProcessorCount}; \"other\" is everything else on the " +
                      "shared machine, e.g. other engineers' builds and tests):");
        md.AppendLine();
        md.AppendLine("| path | tenants | machine busy | steal | " + string.Join(" | ", runs.SelectMany(r => r.Cpu.ProcessCores.Keys).Distinct()) + " | other | CPU ms per write (ours) |");
        md.AppendLine("|---|---|---|---|" + string.Concat(runs.SelectMany(r => r.Cpu.ProcessCores.Keys).Distinct().Select(_ => "---|")) + "---|---|");
        foreach (var r in runs)
        {
            var ours = r.Cpu.ProcessCores.Values.Sum();
            var cells = runs.SelectMany(x => x.Cpu.ProcessCores.Keys).Distinct().Select(k => r.Cpu.ProcessCores.TryGetValue(k, out var v) ? v.ToString("0.00", System.Globalization.CultureInfo.InvariantCulture) : "–");
            md.AppendLine($"| {r.Path}{Variant(r)} | {r.Tenants} | {r.Cpu.MachineBusyCores:0.00} | {r.Cpu.StealCores:0.00} | {string.Join(" | ", cells)} | {Math.Max(0, r.Cpu.MachineBusyCores - ours):0.00} | " +
                          $"{(r.Ok == 0 ? "n/a" : (ours * r.Measured.TotalSeconds * 1000 / r.Ok).ToString("0.00", System.Globalization.CultureInfo.InvariantCulture))} |");
        }
        return md.ToString();
    }

    private static string DescribeLimit(IReadOnlyList<RunResult> runs, BareTransactionLimit.Result? limit)
    {
        if (limit is null) return "";
        var md = new StringBuilder();
        md.AppendLine();
        md.AppendLine($"**Against the limit.** `pgbench -M prepared -c {limit.Clients} -j 2 -T {limit.Seconds}` ran the bare transaction of an audited write — " +
                      "`BEGIN`, the tenant pin (`set_config` of role and tenant), the `cus_integrations` insert, `audit_append` (chain-head lock, hash chain, " +
                      $"audit insert, head update) with a constant MAC, `COMMIT` — over {limit.Tenants} tenants against the same cluster, before the service's runs " +
                      $"(script: `{Path.GetFileName(limit.Script)}` in the raw output). It measured **{limit.TransactionsPerSecond:N0} transactions/s** " +
                      $"({limit.Failed} failed). What the service adds on top: the mediator and its behaviors, validation, the HMAC of the event, and for HTTP Kestrel " +
                      "and the API-key check, all on the same two cores as PostgreSQL.");
        md.AppendLine();
        md.AppendLine("| path | tenants | writes/s | limit (pgbench) | ours / limit |");
        md.AppendLine("|---|---|---|---|---|");
        foreach (var r in runs.Where(r => r.Tenants > 1))
        {
            md.AppendLine($"| {r.Path}{Variant(r)} | {r.Tenants} | {r.PerSecondRate:N0} | {limit.TransactionsPerSecond:N0} | **{r.PerSecondRate / limit.TransactionsPerSecond:0.00}** |");
        }
        return md.ToString();
    }

    private static string Variant(RunResult run) => run.Name.Contains(", ", StringComparison.Ordinal) ? $" ({run.Name[(run.Name.IndexOf(", ", StringComparison.Ordinal) + 2)..]})" : "";

    private static async Task<int> PostmasterPidAsync(string connectionString)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        var backend = await connection.ExecuteScalarAsync<int>("SELECT pg_backend_pid()");
        return CpuMeter.ParentOf(backend);
    }
}
