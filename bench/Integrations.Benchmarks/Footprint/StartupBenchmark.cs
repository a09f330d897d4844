using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using Integrations.Benchmarks.Support;
using Integrations.Common;
using Integrations.Infrastructure.Security;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Benchmarks.Footprint;

/// <summary>
/// Benchmark 5: from starting <c>dotnet Integrations.Api.dll</c> to the first request it serves (the liveness probe)
/// and to the first authenticated API answer (first JIT of the pipeline, first database connections), repeated
/// on fresh processes; and the host's resident memory, idle after start-up and at its peak under load.
/// </summary>
public sealed class StartupBenchmark(BenchSettings settings, Report report)
{
    private sealed record Start(double LiveMs, double FirstApiMs, long RssAfterFirstRequest);

    private readonly List<Start> _starts = [];

    public async Task RunAsync(string connectionString)
    {
        var key = await InProcessService.MintKeyAsync(connectionString, "bench-startup", "bench-startup", Scopes.Read);
        for (var run = 0; run < settings.StartupRuns; run++)
        {
            await using var api = ApiProcess.Start(settings, connectionString, $"api-startup-{run + 1}");
            using var http = new HttpClient(new SocketsHttpHandler { UseCookies = false }) { BaseAddress = api.BaseAddress, Timeout = TimeSpan.FromSeconds(10) };
            await api.WaitUntilServedAsync(http, "/health/live", TimeSpan.FromSeconds(90));
            var live = Stopwatch.GetElapsedTime(api.StartedTimestamp).TotalMilliseconds;

            using var request = new HttpRequestMessage(HttpMethod.Get, "/integrations?limit=1");
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
            using var response = await http.SendAsync(request);
            await response.Content.LoadIntoBufferAsync();
            if (response.StatusCode != HttpStatusCode.OK) throw new InvalidOperationException($"first API request answered {(int)response.StatusCode}");
            var firstApi = Stopwatch.GetElapsedTime(api.StartedTimestamp).TotalMilliseconds;
            await Task.Delay(500); // let start-up allocations settle before reading RSS
            _starts.Add(new Start(live, firstApi, api.Memory().Rss));
            Console.WriteLine($"[startup] run {run + 1}: first served request {live:0} ms, first API answer {firstApi:0} ms, RSS {Fmt.Mb(_starts[^1].RssAfterFirstRequest)}");
        }
    }

    /// <param name="invoke">Benchmark 4's API host, when that stage ran: its peak RSS is the figure the issue asks for.</param>
    /// <param name="auditHttpPeak">VmHWM of the API host during benchmark 2's HTTP run, when that ran (the fallback).</param>
    public void Describe(ToolsInvoke.ToolsInvokeBenchmark? invoke, long? auditHttpPeak, int auditHttpCallers)
    {
        if (_starts.Count > 0)
        {
            var md = new StringBuilder();
            var live = Latency.Median(_starts.Select(s => s.LiveMs));
            var api = Latency.Median(_starts.Select(s => s.FirstApiMs));
            var rss = (long)Latency.Median(_starts.Select(s => (double)s.RssAfterFirstRequest));
            md.AppendLine($"**Start-up.** {_starts.Count} fresh starts of `dotnet Integrations.Api.dll --urls ...` (Production environment, framework-dependent, JIT; " +
                          "`MigrateOnStart` on, so each start checks the migrations against the already-migrated database). Timed from `Process.Start` to the first 200 " +
                          "of `GET /health/live` (polled every 5 ms, new connection each run), then to the first 200 of an authenticated `GET /integrations?limit=1`.");
            md.AppendLine();
            md.AppendLine("| | median | runs |");
            md.AppendLine("|---|---|---|");
            md.AppendLine($"| start → first served request (`/health/live`) | {live:N0} ms | {string.Join(", ", _starts.Select(s => s.LiveMs.ToString("N0", System.Globalization.CultureInfo.InvariantCulture)))} ms |");
            md.AppendLine($"| start → first authenticated API answer | {api:N0} ms | {string.Join(", ", _starts.Select(s => s.FirstApiMs.ToString("N0", System.Globalization.CultureInfo.InvariantCulture)))} ms |");
            md.AppendLine($"| RSS after the first API answer | {Fmt.Mb(rss)} | {string.Join(", ", _starts.Select(s => Fmt.Mb(s.RssAfterFirstRequest)))} |");
            report.Target(new TargetResult("5. start-up to first served request", "reported (no target)", $"{live:N0} ms (first API answer {api:N0} ms)", null));
            report.Add(new Section(5, "5. Footprint", md.ToString()));
        }

        if (invoke is { PeakRssBytes: > 0 })
        {
            report.Add(new Section(5, "5. Footprint: peak memory",
                $"The API host's peak RSS during benchmark 4 (tools.invoke, {settings.InvokeCallers} concurrent callers at saturation, every call audited): " +
                $"**{Fmt.Mb(invoke.PeakRssBytes)}** (`VmHWM` from `/proc/<pid>/status` at the end of the stage, or the highest `VmRSS` sampled every 250 ms, " +
                $"whichever is larger; {Fmt.Mb(invoke.RssAfterStartBytes)} once ready)."));
            report.Target(new TargetResult("5. peak RSS during benchmark 4", "reported (no target)", Fmt.Mb(invoke.PeakRssBytes), null));
        }
        else if (auditHttpPeak is { } peak)
        {
            report.Add(new Section(5, "5. Footprint: peak memory",
                "The issue asks for the peak during benchmark 4 (tools.invoke), which did not run in this run; the peak is taken during benchmark 2's HTTP run " +
                $"instead ({auditHttpCallers} concurrent callers writing through the API host): the host's `VmHWM` from `/proc/<pid>/status` at the end of the run " +
                $"(and the highest `VmRSS` sampled every 250 ms, whichever is larger): **{Fmt.Mb(peak)}**."));
            report.Target(new TargetResult("5. peak RSS (during benchmark 2 HTTP; benchmark 4 did not run)", "reported (no target)", Fmt.Mb(peak), null));
        }
    }
}
