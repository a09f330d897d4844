using System.Diagnostics;

namespace Integrations.Benchmarks.Support;

/// <summary>A peer gateway from bench/peers (npm, pinned by its lock file) run under the machine's node, as a measured child process.</summary>
public static class NodePeer
{
    public static ChildProcess Start(BenchSettings settings, string script, IEnumerable<string> arguments, string logName,
        IReadOnlyDictionary<string, string>? environment = null)
    {
        var path = Path.Combine(settings.PeersDirectory, script);
        if (!File.Exists(path)) throw new InvalidOperationException($"{path} is missing: ./build.sh bench installs bench/peers with npm ci");
        var info = new ProcessStartInfo("node") { WorkingDirectory = settings.OutputDirectory };
        info.ArgumentList.Add(path);
        foreach (var argument in arguments) info.ArgumentList.Add(argument);
        info.Environment.Remove("OTEL_EXPORTER_OTLP_ENDPOINT");
        foreach (var (name, value) in environment ?? new Dictionary<string, string>()) info.Environment[name] = value;
        return ChildProcess.Start(info, Path.Combine(settings.OutputDirectory, logName + ".log"));
    }

    /// <summary>The node that runs the peers (e.g. v20.20.2), for the report.</summary>
    public static string NodeVersion()
    {
        var info = new ProcessStartInfo("node", "--version") { RedirectStandardOutput = true, UseShellExecute = false };
        using var process = Process.Start(info)!;
        var version = process.StandardOutput.ReadToEnd().Trim();
        process.WaitForExit();
        return version;
    }
}
