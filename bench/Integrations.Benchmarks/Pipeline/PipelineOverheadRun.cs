using System.Globalization;
using System.Text;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Exporters;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Loggers;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using Integrations.Benchmarks.Support;
using Perfolizer.Horology;

namespace Integrations.Benchmarks.Pipeline;

/// <summary>Runs <see cref="PipelineOverheadBenchmarks"/> with BenchmarkDotNet and writes its section of the report.</summary>
public sealed class PipelineOverheadRun(BenchSettings settings, Report report)
{
    public void Run()
    {
        Console.WriteLine("[pipeline] BenchmarkDotNet (in-process toolchain)...");
        // In-process: BenchmarkDotNet's default toolchain generates, restores and builds a project per run, which
        // costs minutes on these shared 2-core machines and needs packages the local NuGet copy may not hold.
        var job = Job.Default
            .WithToolchain(InProcessEmitToolchain.Instance)
            .WithLaunchCount(1)
            .WithWarmupCount(settings.PipelineWarmups)
            .WithIterationCount(settings.PipelineIterations)
            .WithIterationTime(TimeInterval.FromMilliseconds(settings.PipelineIterationMs));
        var artifacts = Path.Combine(settings.OutputDirectory, "BenchmarkDotNet");
        var config = ManualConfig.CreateEmpty()
            .AddJob(job)
            .AddDiagnoser(MemoryDiagnoser.Default)
            .AddColumnProvider(DefaultColumnProviders.Instance)
            .AddLogger(ConsoleLogger.Default)
            .AddExporter(MarkdownExporter.GitHub)
            .WithArtifactsPath(artifacts)
            .WithOptions(ConfigOptions.JoinSummary);
        var summary = BenchmarkRunner.Run<PipelineOverheadBenchmarks>(config);

        var rows = summary.Reports
            .Where(r => r.ResultStatistics is not null)
            .Select(r => new
            {
                Method = r.BenchmarkCase.Descriptor.WorkloadMethodDisplayInfo.Trim('\''),
                IsBaseline = r.BenchmarkCase.Descriptor.Baseline,
                Telemetry = r.BenchmarkCase.Parameters["Telemetry"]?.ToString() ?? "",
                MedianNs = r.ResultStatistics!.Median,
                MeanNs = r.ResultStatistics.Mean,
                ErrorNs = r.ResultStatistics.StandardError,
                Bytes = r.GcStats.GetBytesAllocatedPerOperation(r.BenchmarkCase) ?? 0,
            }).ToList();

        var md = new StringBuilder();
        md.AppendLine("BenchmarkDotNet 0.14.0, in-process emit toolchain (no separate build per run), " +
                      $"{settings.PipelineWarmups} warm-up and {settings.PipelineIterations} measured iterations of {settings.PipelineIterationMs} ms each, MemoryDiagnoser. " +
                      "The request is a no-op read operation with a one-rule validator. *Full behavior chain* is Tracing → Authorization → Validation → handler " +
                      "(the Audit behavior applies only to `IAudited` writes; what it adds is a database transaction, which benchmark 2 measures). " +
                      "*Telemetry host* subscribes the OpenTelemetry SDK to the `Integrations` source and meter as the API host does (every activity sampled and recorded, no exporter); " +
                      "*off* has no listener, so the activity is never created.");
        md.AppendLine();
        md.AppendLine("| telemetry | call | median ns | mean ± s.e. ns | allocated B/op | added vs direct |");
        md.AppendLine("|---|---|---|---|---|---|");
        foreach (var group in rows.GroupBy(r => r.Telemetry))
        {
            var baseline = group.FirstOrDefault(r => r.IsBaseline);
            foreach (var r in group)
            {
                var added = baseline is null || r.IsBaseline ? "–" : $"+{r.MedianNs - baseline.MedianNs:N0} ns, +{r.Bytes - baseline.Bytes:N0} B";
                md.AppendLine($"| {r.Telemetry} | {r.Method} | {r.MedianNs.ToString("N0", CultureInfo.InvariantCulture)} | " +
                              $"{r.MeanNs.ToString("N0", CultureInfo.InvariantCulture)} ± {r.ErrorNs.ToString("N0", CultureInfo.InvariantCulture)} | {r.Bytes:N0} | {added} |");
            }
            if (baseline is not null && group.FirstOrDefault(r => r.Method.StartsWith("new scope", StringComparison.Ordinal)) is { } perRequest)
            {
                report.Target(new TargetResult($"3. pipeline overhead (telemetry {group.Key})", "reported (no target)",
                    $"+{(perRequest.MedianNs - baseline.MedianNs) / 1000:0.0} µs, +{perRequest.Bytes - baseline.Bytes:N0} B per request (scope + full chain)", null));
            }
        }
        md.AppendLine();
        var exported = Directory.Exists(artifacts)
            ? Directory.EnumerateFiles(artifacts, "*-report-github.md", SearchOption.AllDirectories).FirstOrDefault()
            : null;
        if (exported is not null)
        {
            md.AppendLine("<details><summary>BenchmarkDotNet's own summary</summary>");
            md.AppendLine();
            md.AppendLine(File.ReadAllText(exported).Trim());
            md.AppendLine();
            md.AppendLine("</details>");
        }
        report.Add(new Section(3, "3. Pipeline overhead (BenchmarkDotNet)", md.ToString()));
    }
}
