using System.Diagnostics;
using System.Globalization;

namespace Integrations.Benchmarks.Support;

/// <summary>Latency samples in milliseconds, and their nearest-rank percentiles.</summary>
public sealed class Latency
{
    private readonly List<double> _samples;

    public Latency(int capacity = 1024) => _samples = new List<double>(capacity);

    public int Count => _samples.Count;

    public void Add(double milliseconds) => _samples.Add(milliseconds);

    public void Add(long startTimestamp) => _samples.Add(Stopwatch.GetElapsedTime(startTimestamp).TotalMilliseconds);

    public void AddRange(Latency other) => _samples.AddRange(other._samples);

    public double Percentile(double p)
    {
        if (_samples.Count == 0) return double.NaN;
        var sorted = _samples.Order().ToArray();
        var rank = (int)Math.Ceiling(p / 100.0 * sorted.Length);
        return sorted[Math.Clamp(rank - 1, 0, sorted.Length - 1)];
    }

    public double Max => _samples.Count == 0 ? double.NaN : _samples.Max();

    public double Mean => _samples.Count == 0 ? double.NaN : _samples.Average();

    public static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        if (sorted.Length == 0) return double.NaN;
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }
}

public static class Fmt
{
    public static string Ms(double value) => double.IsNaN(value) ? "n/a" : value.ToString(value < 10 ? "0.00" : "0.0", CultureInfo.InvariantCulture);

    public static string N(double value, string format = "N0") => value.ToString(format, CultureInfo.InvariantCulture);

    public static string Mb(long bytes) => (bytes / 1024.0 / 1024.0).ToString("0", CultureInfo.InvariantCulture) + " MiB";

    public static string Met(bool met) => met ? "**met**" : "**missed**";
}
