using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Npgsql;

namespace Integrations.Benchmarks.Support;

/// <summary>
/// Runs <c>pgbench</c> (from the PostgreSQL packages) with a custom script against the benchmark's cluster: the
/// physical limit the service's figures are divided by (issue 20). Prepared statements, two pgbench threads; the
/// script and pgbench's output are kept in the raw output directory.
/// </summary>
public static partial class PgBench
{
    public sealed record Result(double TransactionsPerSecond, int Clients, int Seconds, long Failed, string Script);

    /// <param name="name">The script's file name (without extension) in <paramref name="outputDirectory"/>.</param>
    /// <param name="defines">Variables the script reads as <c>:name</c> (<c>-D name=value</c>).</param>
    public static async Task<Result> RunAsync(string connectionString, string outputDirectory, string name, string script, int clients, int seconds,
        IReadOnlyDictionary<string, string>? defines = null)
    {
        var path = Path.Combine(outputDirectory, name + ".pgbench");
        await File.WriteAllTextAsync(path, script);
        var cs = new NpgsqlConnectionStringBuilder(connectionString);
        var start = new ProcessStartInfo(Executable())
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        var arguments = new List<string> { "-n", "-M", "prepared", "-c", clients.ToString(CultureInfo.InvariantCulture), "-j", "2",
            "-T", seconds.ToString(CultureInfo.InvariantCulture), "-f", path };
        foreach (var (key, value) in defines ?? new Dictionary<string, string>()) arguments.AddRange(["-D", $"{key}={value}"]);
        arguments.AddRange(["-h", cs.Host!, "-p", cs.Port.ToString(CultureInfo.InvariantCulture), "-U", cs.Username!, cs.Database!]);
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        start.Environment["PGPASSWORD"] = cs.Password;
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        var text = await output + await error;
        await File.WriteAllTextAsync(Path.Combine(outputDirectory, name + ".pgbench.out"), text);
        var tps = Tps().Match(text);
        if (process.ExitCode != 0 || !tps.Success)
        {
            throw new InvalidOperationException($"pgbench failed ({process.ExitCode}): {text[..Math.Min(text.Length, 600)]}");
        }
        var failed = Failed().Match(text) is { Success: true } f ? long.Parse(f.Groups[1].Value, CultureInfo.InvariantCulture) : 0;
        return new Result(double.Parse(tps.Groups[1].Value, CultureInfo.InvariantCulture), clients, seconds, failed, path);
    }

    private static string Executable()
    {
        if (Environment.GetEnvironmentVariable("PG_BIN") is { Length: > 0 } bin) return Path.Combine(bin, "pgbench");
        var found = Directory.Exists("/usr/lib/postgresql")
            ? Directory.GetDirectories("/usr/lib/postgresql").Select(d => Path.Combine(d, "bin", "pgbench")).Where(File.Exists).Order().LastOrDefault()
            : null;
        return found ?? "pgbench";
    }

    [GeneratedRegex(@"tps = ([0-9.]+) \(without initial connection time\)")]
    private static partial Regex Tps();

    [GeneratedRegex(@"number of failed transactions: ([0-9]+)")]
    private static partial Regex Failed();
}
