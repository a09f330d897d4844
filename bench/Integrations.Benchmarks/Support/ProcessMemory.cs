namespace Integrations.Benchmarks.Support;

/// <summary>Resident set size of a process from /proc: now (VmRSS) and its peak so far (VmHWM).</summary>
public static class ProcessMemory
{
    public static (long Rss, long Peak) Read(int pid)
    {
        long rss = 0, peak = 0;
        try
        {
            foreach (var line in File.ReadLines($"/proc/{pid}/status"))
            {
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal)) rss = Kilobytes(line) * 1024;
                else if (line.StartsWith("VmHWM:", StringComparison.Ordinal)) peak = Kilobytes(line) * 1024;
            }
        }
        catch (IOException)
        {
        }
        return (rss, peak);
    }

    private static long Kilobytes(string line) =>
        long.Parse(line.Split(':', 2)[1].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture);
}
