using System.Diagnostics;
using Dapper;
using Integrations.Benchmarks.Audit;
using Integrations.Benchmarks.Footprint;
using Integrations.Benchmarks.LlmGateway;
using Integrations.Benchmarks.McpGateway;
using Integrations.Benchmarks.Pipeline;
using Integrations.Benchmarks.Query;
using Integrations.Benchmarks.Support;
using Integrations.Benchmarks.Telemetry;
using Integrations.Benchmarks.ToolsInvoke;
using Npgsql;

// The benchmark suite of issue 7. Run it with ./build.sh bench (which builds, starts a throwaway PostgreSQL and
// sets BENCH_*); stages run in this order, each into its own section of the report.
var settings = BenchSettings.FromEnvironment();
var machine = new MachineInfo();
var report = new Report();
var total = Stopwatch.StartNew();
var failed = false;
Directory.CreateDirectory(settings.OutputDirectory);

var connectionString = await InProcessService.CreateMigratedDatabaseAsync(settings.AdminConnectionString, "bench");
if (settings.ServiceConnectionOptions.Length > 0)
{
    connectionString += ";" + settings.ServiceConnectionOptions;
    report.Note($"The service under test ran with the extra connection-string options `{settings.ServiceConnectionOptions}`.");
}
await using (var connection = new NpgsqlConnection(connectionString))
{
    machine.PostgresVersion = (await connection.ExecuteScalarAsync<string>("SELECT version()"))!.Split(" on ")[0];
    var shown = new List<string>();
    foreach (var name in new[] { "fsync", "synchronous_commit", "full_page_writes", "shared_buffers", "max_connections" })
    {
        shown.Add($"{name}={await connection.ExecuteScalarAsync<string>($"SHOW {name}")}");
    }
    machine.PostgresSettings = string.Join(", ", shown);
}

var startup = new StartupBenchmark(settings, report);
var audit = new AuditThroughputBenchmark(settings, report);
async Task Stage(string name, Func<Task> run)
{
    if (!settings.Runs(name)) return;
    var watch = Stopwatch.StartNew();
    Console.WriteLine($"== {name} ({MachineInfo.LoadAverage()} load) ==");
    try
    {
        await run();
    }
    catch (Exception e)
    {
        failed = true;
        Console.Error.WriteLine($"stage {name} failed: {e}");
        report.Note($"Stage `{name}` failed: `{e.GetType().Name}: {e.Message}`");
    }
    Console.WriteLine($"== {name} done in {watch.Elapsed.TotalSeconds:0} s ==");
}

// BenchmarkDotNet first, in a process that has not yet allocated the seeding and load-test heaps.
await Stage("pipeline", () => { new PipelineOverheadRun(settings, report).Run(); return Task.CompletedTask; });
await Stage("startup", () => startup.RunAsync(connectionString));
await Stage("query", () => new QueryAtScaleBenchmark(settings, report).RunAsync(connectionString));
await Stage("audit", () => audit.RunAsync(connectionString));
var invoke = new ToolsInvokeBenchmark(settings, report);
await Stage("tools-invoke", () => invoke.RunAsync(connectionString));
await Stage("telemetry", () => new TelemetrySummaryBenchmark(settings, report).RunAsync(connectionString));
await Stage("mcp-gateway", () => new McpGatewayBenchmark(settings, report).RunAsync(connectionString));
await Stage("llm-gateway", () => new LlmGatewayBenchmark(settings, report).RunAsync(connectionString));
if (settings.Runs("startup") || settings.Runs("audit") || settings.Runs("tools-invoke"))
{
    startup.Describe(settings.Runs("tools-invoke") ? invoke : null, audit.HttpPeakRssBytes > 0 ? audit.HttpPeakRssBytes : null, settings.AuditCallers);
}

machine.Finish();
var rendered = report.Render(machine, settings, total.Elapsed);
File.WriteAllText(Path.Combine(settings.OutputDirectory, "report.md"), rendered);
var partial = BenchSettings.AllStages.Any(stage => !settings.Runs(stage))
    ? $"Measured by `{settings.Command}` on {machine.StartedUtc:yyyy-MM-dd HH:mm} UTC, commit `{settings.Commit}`, load average (1/5/15 min) before {machine.LoadBefore}, after {machine.LoadAfter}."
    : null;
Report.Splice(settings.ReportPath, rendered, partial);
Console.WriteLine($"Report written to {settings.ReportPath} ({total.Elapsed.TotalMinutes:0.0} min).");
return failed ? 1 : 0;
