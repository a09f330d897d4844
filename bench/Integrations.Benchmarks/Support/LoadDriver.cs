using System.Diagnostics;
using System.Runtime.InteropServices;
using Dapper;
using Npgsql;

namespace Integrations.Benchmarks.Support;

/// <summary>One call of a load: whether it succeeded, and when its answer's first byte arrived (0 when not measured).</summary>
public readonly record struct Answer(bool Ok, long FirstByteAt = 0)
{
    public static implicit operator Answer(bool ok) => new(ok);
}

public delegate Task<Answer> Call(CancellationToken ct);

/// <summary>One path under one load in one repetition; <see cref="FirstByte"/> is empty unless the calls measured it.</summary>
public sealed record LoadRun(
    string Path, string Load, int Repetition, TimeSpan Measured, long Ok, long Failed, Latency Latency, Latency DispatchLag, Latency FirstByte,
    CpuMeter.Usage Cpu, string? FirstFailure)
{
    public double PerSecond => Ok / Measured.TotalSeconds;

    /// <summary>CPU ms per successful call, all the processes the meter follows.</summary>
    public double CpuPerCall() => Ok == 0 ? double.NaN : Cpu.ProcessCores.Values.Sum() * Measured.TotalSeconds * 1000 / Ok;

    public double CpuPerCall(string process) => Ok == 0 ? double.NaN : Cpu.ProcessCores.GetValueOrDefault(process) * Measured.TotalSeconds * 1000 / Ok;
}

/// <summary>
/// The two loads of the gateway benchmarks. <see cref="FixedRateAsync"/> is an open loop: call i is due at
/// start + i / rate, sent from a dedicated thread at that time (or at once when the sender is late), and its latency
/// (and first byte) is measured from when it was due, not from when it was sent, so a stalled system is charged for the calls it could
/// not send (no coordinated omission). <see cref="SaturationAsync"/> is N callers in a closed loop, each calling again
/// as soon as it is answered; the calls that complete inside the window are counted and timed.
/// </summary>
public sealed class LoadDriver(string stage, int rate, int rateSeconds, int callers)
{
    public const string FixedRate = "fixed rate", Saturation = "saturation";

    public int Rate => rate;

    public int Callers => callers;

    public async Task<LoadRun> FixedRateAsync(string path, int repetition, Call call, CpuMeter cpu, string load = FixedRate)
    {
        var total = rate * rateSeconds;
        Console.WriteLine($"[{stage}] {path}, {load}: {rate} calls/s for {rateSeconds} s (repetition {repetition})...");
        var latencies = new double[total];
        var firstBytes = new double[total];
        var lags = new double[total];
        var outcomes = new bool[total];
        string? firstFailure = null;
        var tasks = new Task[total];
        var frequency = (double)Stopwatch.Frequency;
        var interval = frequency / rate;
        var before = cpu.Take();
        var start = Stopwatch.GetTimestamp() + Stopwatch.Frequency / 100;

        async Task One(int i, long due)
        {
            lags[i] = (Stopwatch.GetTimestamp() - due) * 1000.0 / frequency;
            try
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
                var answer = await call(timeout.Token);
                outcomes[i] = answer.Ok;
                firstBytes[i] = answer.FirstByteAt == 0 ? double.NaN : (answer.FirstByteAt - due) * 1000.0 / frequency;
                if (!outcomes[i]) Interlocked.CompareExchange(ref firstFailure, "a call was answered with a failure", null);
            }
            catch (Exception e) when (IsCallFailure(e))
            {
                Interlocked.CompareExchange(ref firstFailure, $"{e.GetType().Name}: {e.Message}", null);
            }
            latencies[i] = (Stopwatch.GetTimestamp() - due) * 1000.0 / frequency;
        }

        var sender = new Thread(() =>
        {
            for (var i = 0; i < total; i++)
            {
                var due = start + (long)(i * interval);
                SleepUntil(due);
                var index = i;
                tasks[i] = Task.Run(() => One(index, due));
            }
        })
        { IsBackground = true, Name = "fixed-rate sender", Priority = ThreadPriority.AboveNormal };
        sender.Start();
        await Task.Run(sender.Join);
        await Task.WhenAll(tasks);
        var elapsed = TimeSpan.FromSeconds(rateSeconds);
        var usage = CpuMeter.Between(before, cpu.Take(), elapsed);

        var latency = new Latency(total);
        var firstByte = new Latency(total);
        var lag = new Latency(total);
        long ok = 0;
        for (var i = 0; i < total; i++)
        {
            lag.Add(lags[i]);
            if (!outcomes[i]) continue;
            ok++;
            latency.Add(latencies[i]);
            if (!double.IsNaN(firstBytes[i])) firstByte.Add(firstBytes[i]);
        }
        var run = new LoadRun(path, load, repetition, elapsed, ok, total - ok, latency, lag, firstByte, usage, firstFailure);
        Print(run);
        return run;
    }

    /// <summary>Repetition 0 is a warm-up: no ramp, nothing printed.</summary>
    public async Task<LoadRun> SaturationAsync(string path, int repetition, Call call, int seconds, CpuMeter cpu, string load = Saturation)
    {
        if (repetition > 0) Console.WriteLine($"[{stage}] {path}, {load}: {callers} callers for {seconds} s (repetition {repetition})...");
        var frequency = Stopwatch.Frequency;
        var rampUp = repetition > 0 ? frequency / 2 : 0; // half a second for every caller to be in flight before the window opens
        var begin = Stopwatch.GetTimestamp();
        var measureFrom = begin + rampUp;
        var end = measureFrom + seconds * frequency;
        var latencies = Enumerable.Range(0, callers).Select(_ => new Latency(4096)).ToArray();
        var firstBytes = Enumerable.Range(0, callers).Select(_ => new Latency(4096)).ToArray();
        long ok = 0, failed = 0;
        string? firstFailure = null;
        CpuMeter.Snapshot? before = null;
        var gate = new Lock();

        var workers = Enumerable.Range(0, callers).Select(caller => Task.Run(async () =>
        {
            while (true)
            {
                var t0 = Stopwatch.GetTimestamp();
                if (t0 >= end) break;
                if (t0 >= measureFrom && before is null)
                {
                    lock (gate) before ??= cpu.Take();
                }
                Answer answer;
                try
                {
                    using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
                    answer = await call(timeout.Token);
                }
                catch (Exception e) when (IsCallFailure(e))
                {
                    answer = false;
                    Interlocked.CompareExchange(ref firstFailure, $"{e.GetType().Name}: {e.Message}", null);
                }
                var t1 = Stopwatch.GetTimestamp();
                if (t0 < measureFrom || t1 > end) continue;
                if (answer.Ok)
                {
                    latencies[caller].Add((t1 - t0) * 1000.0 / frequency);
                    if (answer.FirstByteAt != 0) firstBytes[caller].Add((answer.FirstByteAt - t0) * 1000.0 / frequency);
                    Interlocked.Increment(ref ok);
                }
                else
                {
                    Interlocked.Increment(ref failed);
                    Interlocked.CompareExchange(ref firstFailure, "a call was answered with a failure", null);
                }
            }
        })).ToArray();
        await Task.WhenAll(workers);
        var measured = TimeSpan.FromSeconds(seconds);
        var after = cpu.Take();
        var usage = CpuMeter.Between(before ?? after, after, measured);
        var latency = new Latency(latencies.Sum(l => l.Count));
        foreach (var l in latencies) latency.AddRange(l);
        var firstByte = new Latency(firstBytes.Sum(l => l.Count));
        foreach (var l in firstBytes) firstByte.AddRange(l);
        var run = new LoadRun(path, load, repetition, measured, ok, failed, latency, new Latency(1), firstByte, usage, firstFailure);
        if (repetition > 0) Print(run);
        return run;
    }

    private static bool IsCallFailure(Exception e) =>
        e is HttpRequestException or TaskCanceledException or OperationCanceledException or IOException or InvalidOperationException
            or ModelContextProtocol.McpException;

    private void Print(LoadRun run) =>
        Console.WriteLine($"[{stage}] {run.Path}, {run.Load} #{run.Repetition}: {run.PerSecond:N0}/s, p50 {Fmt.Ms(run.Latency.Percentile(50))} " +
                          $"p99 {Fmt.Ms(run.Latency.Percentile(99))} max {Fmt.Ms(run.Latency.Max)} ms" +
                          (run.FirstByte.Count > 0 ? $", first byte p50 {Fmt.Ms(run.FirstByte.Percentile(50))} p99 {Fmt.Ms(run.FirstByte.Percentile(99))} ms" : "") +
                          $", failed {run.Failed}, CPU " +
                          string.Join(", ", run.Cpu.ProcessCores.Select(p => $"{p.Key} {p.Value:0.00}")) + $" (machine {run.Cpu.MachineBusyCores:0.00})" +
                          (run.FirstFailure is null ? "" : $" ({run.FirstFailure})"));

    private static void SleepUntil(long due)
    {
        while (true)
        {
            var ahead = due - Stopwatch.GetTimestamp();
            if (ahead <= 0) return;
            var microseconds = ahead * 1_000_000 / Stopwatch.Frequency;
            if (microseconds > 0) _ = usleep((uint)Math.Min(microseconds, 1_000_000)); // an interrupted sleep is retried by the loop
        }
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int usleep(uint microseconds);

    /// <summary>The bench cluster's postmaster, whose process tree is PostgreSQL's share of the CPU.</summary>
    public static async Task<int> PostmasterPidAsync(string connectionString)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        var backend = await connection.ExecuteScalarAsync<int>("SELECT pg_backend_pid()");
        return CpuMeter.ParentOf(backend);
    }
}
