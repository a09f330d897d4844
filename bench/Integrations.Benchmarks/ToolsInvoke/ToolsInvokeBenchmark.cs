using Integrations.Benchmarks.Support;

namespace Integrations.Benchmarks.ToolsInvoke;

/// <summary>
/// Benchmark 4: tools.invoke through the governed gateway vs. the same MCP tool called directly (added latency
/// p50 ≤ 1 ms and p99 ≤ 5 ms at 200 calls/s; saturation ≥ 0.6 × direct), and the host's peak RSS while it runs.
/// PENDING: tools.invoke is being built separately; its gateway-vs-direct benchmark goes here when it lands,
/// and <see cref="Footprint.StartupBenchmark.Describe"/> should then take its peak RSS from this run.
/// </summary>
public sealed class ToolsInvokeBenchmark(BenchSettings settings, Report report)
{
    public Task RunAsync(string connectionString)
    {
        _ = settings;
        _ = connectionString;
        report.Add(new Section(4, "4. tools.invoke gateway vs direct — pending on tools.invoke",
            "Not measured yet: `tools.invoke` is being built separately. Its gateway-vs-direct benchmark (added latency at 200 calls/s, saturation " +
            "relative to calling the MCP server directly) will be added to this stage (`bench/Integrations.Benchmarks/ToolsInvoke/`, stage `tools-invoke`) " +
            "when it lands; no figure is reported until then."));
        report.Target(new TargetResult("4. tools.invoke added latency at 200 calls/s", "p50 ≤ 1 ms, p99 ≤ 5 ms", "pending on tools.invoke", null));
        report.Target(new TargetResult("4. tools.invoke saturation", "≥ 0.6 × direct", "pending on tools.invoke", null));
        return Task.CompletedTask;
    }
}
