using System.Diagnostics;
using System.Net;
using Integrations.Common;
using Integrations.Infrastructure.Security;
using Integrations.Infrastructure.Telemetry;
using Integrations.Tests.Support;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;

namespace Integrations.Tests.Platform;

/// <summary>The host's OpenTelemetry wiring: what an exporter configured beside it receives.</summary>
public sealed class TelemetryTests
{
    [Fact]
    public async Task A_request_is_one_trace_from_the_server_span_through_the_operation_to_its_sql_and_the_operation_is_metered()
    {
        var spans = new List<Activity>();
        var metrics = new List<Metric>();
        await using var parent = await ApiFactory.StartAsync();
        await using var api = parent.WithWebHostBuilder(b => b.ConfigureTestServices(s => s
            .ConfigureOpenTelemetryTracerProvider(t => t.AddInMemoryExporter(spans))
            .ConfigureOpenTelemetryMeterProvider(m => m.AddInMemoryExporter(metrics))));
        var key = await api.Services.GetRequiredService<ApiKeys>().CreateAsync(TestEnvironment.NewTenant(), "test", Scopes.All, CancellationToken.None);
        var client = api.CreateClient();

        // The providers listen process-wide; the trace id picks this request's spans out of other tests' ones.
        var traceId = ActivityTraceId.CreateRandom();
        using var request = new HttpRequestMessage(HttpMethod.Get, "/integrations?limit=5");
        request.Headers.Authorization = new("Bearer", key.Key);
        request.Headers.Add("traceparent", $"00-{traceId}-{ActivitySpanId.CreateRandom()}-01");
        Assert.Equal(HttpStatusCode.OK, (await client.SendAsync(request)).StatusCode);

        // The test server hands the answer over before the pipeline has unwound (the request log line, the server
        // span's end): wait for the server span rather than race it.
        Activity[] ours = [];
        for (var deadline = DateTime.UtcNow.AddSeconds(10); DateTime.UtcNow < deadline; await Task.Delay(50))
        {
            api.Services.GetRequiredService<TracerProvider>().ForceFlush();
            lock (spans) ours = spans.Where(a => a.TraceId == traceId).ToArray();
            if (ours.Any(a => a.Source.Name == "Microsoft.AspNetCore")) break;
        }
        api.Services.GetRequiredService<MeterProvider>().ForceFlush();
        var server = Assert.Single(ours, a => a.Source.Name == "Microsoft.AspNetCore");
        var operation = Assert.Single(ours, a => a.Source.Name == Telemetry.Name);
        Assert.Equal("integrations.query", operation.DisplayName);
        Assert.Equal(server.SpanId, operation.ParentSpanId);
        Assert.Contains(ours, a => a.Source.Name == "Npgsql" && IsWithin(a, operation, ours));

        lock (metrics)
        {
            Assert.Contains(metrics, m => m.MeterName == Telemetry.Name && m.Name == "integrations.operation.count");
            Assert.Contains(metrics, m => m.MeterName == "Microsoft.AspNetCore.Hosting" && m.Name == "http.server.request.duration");
        }
    }

    private static bool IsWithin(Activity span, Activity ancestor, Activity[] trace)
    {
        for (var current = span; current is not null; current = trace.FirstOrDefault(a => a.SpanId == current.ParentSpanId))
        {
            if (current.SpanId == ancestor.SpanId) return true;
        }
        return false;
    }
}
