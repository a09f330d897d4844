using System.Globalization;
using System.Text;

namespace Integrations.Benchmarks.Support;

/// <summary>A way to reach the upstream: directly, through our gateway, or through a peer gateway; <see cref="Streaming"/> when the loads include streaming.</summary>
public sealed record GatewayPath(string Name, Call Call, Call? Streaming = null);

/// <summary>A load every path runs: at the fixed rate or at saturation, plain or streaming (whose calls measure their first byte).</summary>
public sealed record GatewayLoad(string Name, bool Saturated, bool Streaming = false);

/// <summary>
/// The schedule and the tables the gateway stages share (issues 13 and 14): every path under every load in one run,
/// after an untimed warm-up at saturation per path, in repetitions that alternate which path goes first, so the paths
/// meet the same moments of a shared machine. Comparisons are made within a repetition, then the median taken.
/// </summary>
/// <param name="connectionString">The bench database, whose backends are sampled during every run (<see cref="PostgresWaits"/>).</param>
public sealed class GatewayComparison(
    LoadDriver driver, BenchSettings settings, CpuMeter cpu, IReadOnlyList<GatewayPath> paths, IReadOnlyList<GatewayLoad> loads, string connectionString)
{
    private readonly List<LoadRun> _runs = [];
    private readonly Dictionary<LoadRun, IReadOnlyList<(string Wait, double Backends)>> _waits = [];

    public IReadOnlyList<int> Repetitions { get; } = Enumerable.Range(1, settings.GatewayRepetitions).ToArray();

    public async Task RunAsync(string stage)
    {
        foreach (var path in paths)
        {
            Console.WriteLine($"[{stage}] warm-up {path.Name}: {settings.GatewayWarmupSeconds} s at saturation...");
            await driver.SaturationAsync(path.Name, 0, path.Call, settings.GatewayWarmupSeconds, cpu);
            if (path.Streaming is not null) await driver.SaturationAsync(path.Name, 0, path.Streaming, settings.GatewayWarmupSeconds, cpu);
        }
        foreach (var repetition in Repetitions)
        {
            var order = repetition % 2 == 1 ? paths : paths.Reverse().ToList();
            foreach (var load in loads)
            {
                foreach (var path in order)
                {
                    var call = load.Streaming ? path.Streaming ?? throw new InvalidOperationException($"{path.Name} has no streaming call") : path.Call;
                    var waits = PostgresWaits.Start(connectionString);
                    LoadRun run;
                    try
                    {
                        run = load.Saturated
                            ? await driver.SaturationAsync(path.Name, repetition, call, settings.GatewaySaturationSeconds, cpu, load.Name)
                            : await driver.FixedRateAsync(path.Name, repetition, call, cpu, load.Name);
                    }
                    finally
                    {
                        await waits.DisposeAsync();
                    }
                    _runs.Add(run);
                    _waits[run] = waits.Averages;
                }
            }
        }
    }

    public LoadRun Get(string path, GatewayLoad load, int repetition) =>
        _runs.Single(r => r.Path == path && r.Load == load.Name && r.Repetition == repetition);

    /// <summary>The median over repetitions of <paramref name="figure"/>.</summary>
    public double Median(Func<int, double> figure) => Latency.Median(Repetitions.Select(figure));

    public double Median(string path, GatewayLoad load, Func<LoadRun, double> figure) => Median(r => figure(Get(path, load, r)));

    /// <summary><paramref name="path"/>'s figure minus <paramref name="baseline"/>'s in the same repetition, median over repetitions.</summary>
    public double Added(string path, string baseline, GatewayLoad load, Func<LoadRun, double> figure) =>
        Median(r => figure(Get(path, load, r)) - figure(Get(baseline, load, r)));

    /// <summary><paramref name="path"/>'s figure over <paramref name="baseline"/>'s in the same repetition, median over repetitions.</summary>
    public double Ratio(string path, string baseline, GatewayLoad load, Func<LoadRun, double> figure) =>
        Median(r => figure(Get(path, load, r)) / Math.Max(1e-9, figure(Get(baseline, load, r))));

    public static double P50(LoadRun run) => run.Latency.Percentile(50);

    public static double P99(LoadRun run) => run.Latency.Percentile(99);

    public static double FirstByteP50(LoadRun run) => run.FirstByte.Percentile(50);

    public static double FirstByteP99(LoadRun run) => run.FirstByte.Percentile(99);

    public static double PerSecond(LoadRun run) => run.PerSecond;

    /// <summary>Per load and path: throughput, latency (and first byte for streaming loads), failures, machine and CPU per call.</summary>
    public string LoadTable(string unit)
    {
        var md = new StringBuilder();
        md.AppendLine($"| load | path | {unit}/s | p50 ms | p99 ms | max ms | first byte p50 / p99 ms | failed | sender lag p99 ms | machine busy (cores) | CPU ms per {unit} (all processes) |");
        md.AppendLine("|---|---|---|---|---|---|---|---|---|---|---|");
        foreach (var load in loads)
        {
            foreach (var path in paths)
            {
                var these = Repetitions.Select(r => Get(path.Name, load, r)).ToList();
                double M(Func<LoadRun, double> f) => Latency.Median(these.Select(f));
                md.AppendLine($"| {load.Name} | {path.Name} | {M(PerSecond):N0} | {Fmt.Ms(M(P50))} | {Fmt.Ms(M(P99))} | {Fmt.Ms(these.Max(r => r.Latency.Max))} | " +
                              $"{(load.Streaming ? $"{Fmt.Ms(M(FirstByteP50))} / {Fmt.Ms(M(FirstByteP99))}" : "–")} | {these.Sum(r => r.Failed)} | " +
                              $"{(load.Saturated ? "–" : Fmt.Ms(M(r => r.DispatchLag.Percentile(99))))} | {M(r => r.Cpu.MachineBusyCores):0.00} | {M(r => r.CpuPerCall()):0.000} |");
            }
        }
        md.AppendLine();
        md.AppendLine("(Medians over repetitions, except max: the largest of any repetition, and failed: the sum. *Sender lag* is how late the fixed-rate sender " +
                      "dispatched calls, already included in their latency; the machine has " + Environment.ProcessorCount + " cores.)");
        return md.ToString();
    }

    /// <summary>CPU ms per call of each measured process, per load and path.</summary>
    public string CpuTable(string unit)
    {
        var keys = _runs.Where(r => r.Repetition > 0).SelectMany(r => r.Cpu.ProcessCores.Keys).Distinct().ToList();
        var md = new StringBuilder();
        md.AppendLine($"**CPU ms per {unit}, by process** (medians over repetitions; every process is measured in every run, so a column shows what a path costs the processes it does not use: next to nothing):");
        md.AppendLine();
        md.AppendLine("| load | path | " + string.Join(" | ", keys) + " | all |");
        md.AppendLine("|---|---|" + string.Concat(keys.Select(_ => "---|")) + "---|");
        foreach (var load in loads)
        {
            foreach (var path in paths)
            {
                var these = Repetitions.Select(r => Get(path.Name, load, r)).ToList();
                var cells = keys.Select(k => Latency.Median(these.Select(r => r.CpuPerCall(k))).ToString("0.000", CultureInfo.InvariantCulture));
                md.AppendLine($"| {load.Name} | {path.Name} | {string.Join(" | ", cells)} | {Latency.Median(these.Select(r => r.CpuPerCall())):0.000} |");
            }
        }
        return md.ToString();
    }

    /// <summary>
    /// For <paramref name="path"/> (the one that uses the database), the bench database's active backends by what they
    /// waited on, averaged over each run and then over repetitions, per load.
    /// </summary>
    public string WaitsTable(string path)
    {
        var md = new StringBuilder();
        md.AppendLine($"**What PostgreSQL's backends were doing during *{path}*** (`pg_stat_activity` every 50 ms: active backends on average, by wait event; " +
                      "*CPU* is active and waiting on nothing; medians over repetitions; the six largest per load):");
        md.AppendLine();
        md.AppendLine("| load | waiting on | active backends |");
        md.AppendLine("|---|---|---|");
        foreach (var load in loads)
        {
            var these = Repetitions.Select(r => _waits[Get(path, load, r)]).ToList();
            var waits = these.SelectMany(w => w.Select(x => x.Wait)).Distinct()
                .Select(wait => (wait, Latency.Median(these.Select(w => w.FirstOrDefault(x => x.Wait == wait).Backends))))
                .OrderByDescending(w => w.Item2).Take(6).ToList();
            if (waits.Count == 0) md.AppendLine($"| {load.Name} | (none active) | 0 |");
            foreach (var (wait, backends) in waits) md.AppendLine($"| {load.Name} | {wait} | {backends:0.00} |");
        }
        return md.ToString();
    }

    public IEnumerable<string> Failures() =>
        _runs.Where(r => r.FirstFailure is not null).Select(r => $"First failure in {r.Path}, {r.Load} #{r.Repetition}: `{r.FirstFailure}`");
}
