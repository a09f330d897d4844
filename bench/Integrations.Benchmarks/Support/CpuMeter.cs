using System.Globalization;

namespace Integrations.Benchmarks.Support;

/// <summary>
/// CPU time from /proc: the whole machine (busy vs. idle, and steal) and the processes of this benchmark
/// (the load generator, the API host, the bench PostgreSQL cluster), so a throughput figure can say who used the
/// CPU and how much was left to other work on the shared machine.
/// </summary>
public sealed class CpuMeter
{
    private const double TicksPerSecond = 100.0; // USER_HZ on Linux

    /// <param name="Processes">Per group, the CPU ticks of each of its processes (by pid) so far.</param>
    public sealed record Snapshot(double MachineBusy, double MachineTotal, double Steal, IReadOnlyDictionary<string, IReadOnlyDictionary<int, double>> Processes);

    public sealed record Usage(double Seconds, double MachineBusyCores, double StealCores, IReadOnlyDictionary<string, double> ProcessCores);

    private readonly Func<IReadOnlyDictionary<string, IReadOnlyList<int>>> _groups;

    /// <param name="groups">Named sets of process ids to account, read at every snapshot.</param>
    public CpuMeter(Func<IReadOnlyDictionary<string, IReadOnlyList<int>>> groups) => _groups = groups;

    public Snapshot Take()
    {
        double busy = 0, total = 0, steal = 0;
        try
        {
            var fields = File.ReadLines("/proc/stat").First().Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1)
                .Select(f => double.Parse(f, CultureInfo.InvariantCulture)).ToArray();
            // user nice system idle iowait irq softirq steal (guest time is already inside user)
            total = fields.Take(8).Sum();
            var idle = fields[3] + fields[4];
            steal = fields.Length > 7 ? fields[7] : 0;
            busy = total - idle - steal;
        }
        catch (IOException)
        {
        }
        var processes = _groups().ToDictionary(g => g.Key,
            g => (IReadOnlyDictionary<int, double>)g.Value.Distinct().ToDictionary(pid => pid, ProcessTicks));
        return new Snapshot(busy, total, steal, processes);
    }

    public static Usage Between(Snapshot before, Snapshot after, TimeSpan elapsed)
    {
        var seconds = elapsed.TotalSeconds;
        var cores = Environment.ProcessorCount;
        var totalTicks = Math.Max(1, after.MachineTotal - before.MachineTotal);
        double Share(double ticks) => ticks / totalTicks * cores;
        return new Usage(
            seconds,
            Share(after.MachineBusy - before.MachineBusy),
            Share(after.Steal - before.Steal),
            after.Processes.ToDictionary(p => p.Key, p => Delta(before.Processes.GetValueOrDefault(p.Key), p.Value) / TicksPerSecond / seconds));
    }

    /// <summary>
    /// Ticks used between the snapshots by the processes alive at the second: a process that started meanwhile counts from
    /// zero; one that ended meanwhile (a database backend whose connection the pool closed) is left out, since its
    /// last ticks cannot be read (summing the groups instead made such a window negative).
    /// </summary>
    private static double Delta(IReadOnlyDictionary<int, double>? before, IReadOnlyDictionary<int, double> after) =>
        after.Sum(p => Math.Max(0, p.Value - (before?.GetValueOrDefault(p.Key) ?? 0)));

    /// <summary>utime + stime of one process, in ticks; 0 when it is gone.</summary>
    public static double ProcessTicks(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            // after "pid (comm) ": state(0) ppid(1) ... utime(11) stime(12)
            return double.Parse(fields[11], CultureInfo.InvariantCulture) + double.Parse(fields[12], CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            return 0;
        }
    }

    public static int ParentOf(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return int.Parse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[1], CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            return 0;
        }
    }

    /// <summary>The postmaster with the given pid and all its children (backends, WAL writer, checkpointer...).</summary>
    public static IReadOnlyList<int> ProcessTree(int root)
    {
        var pids = new List<int> { root };
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (int.TryParse(Path.GetFileName(dir), out var pid) && pid != root && ParentOf(pid) == root) pids.Add(pid);
        }
        return pids;
    }
}
