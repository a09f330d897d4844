using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;

namespace Integrations.Benchmarks.Support;

/// <summary>What the figures were measured on, including how busy the machine was before and after.</summary>
public sealed class MachineInfo
{
    public DateTime StartedUtc { get; } = DateTime.UtcNow;
    public string LoadBefore { get; } = LoadAverage();
    public string LoadAfter { get; private set; } = "";
    public string PostgresVersion { get; set; } = "";
    public string PostgresSettings { get; set; } = "";

    public void Finish() => LoadAfter = LoadAverage();

    public string Describe(BenchSettings settings)
    {
        var md = new StringBuilder();
        md.AppendLine($"- CPU: {CpuModel()}, `nproc` = {Environment.ProcessorCount}");
        md.AppendLine($"- Memory (`free -h`): {Run("free", "-h").Split('\n').Skip(1).FirstOrDefault()?.Trim() ?? "?"}");
        md.AppendLine($"- OS: {RuntimeInformation.OSDescription}; .NET {Environment.Version}; {PostgresVersion}");
        md.AppendLine($"- PostgreSQL settings: {PostgresSettings}{(settings.PgFast ? " (INTEGRATIONS_PG_FAST=1: durability off)" : " (default durability: fsync on, synchronous_commit on)")}");
        md.AppendLine($"- Load average (1/5/15 min) before: {LoadBefore}; after: {LoadAfter}. The machine has {Environment.ProcessorCount} cores shared with other engineers' builds and tests; a load average above {Environment.ProcessorCount} means they were competing for the CPU during the run.");
        return md.ToString();
    }

    public static string LoadAverage()
    {
        try
        {
            return string.Join(" / ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3));
        }
        catch (IOException)
        {
            return "?";
        }
    }

    private static string CpuModel()
    {
        try
        {
            return File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "?";
        }
        catch (IOException)
        {
            return "?";
        }
    }

    private static string Run(string file, string args)
    {
        try
        {
            using var process = Process.Start(new ProcessStartInfo(file, args) { RedirectStandardOutput = true, UseShellExecute = false })!;
            var output = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            return output;
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
            return "";
        }
    }
}
