using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace Integrations.Infrastructure.Telemetry;

/// <summary>
/// Owns the OpenTelemetry tracer and meter providers (the hosting package is absent here): they listen to
/// ASP.NET Core, HttpClient, Npgsql and our own source and meter, and export over OTLP when
/// <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set.
/// </summary>
public sealed class TelemetryProviders(IConfiguration configuration) : IHostedService, IDisposable
{
    private static readonly string[] Sources = [Telemetry.Name, "Microsoft.AspNetCore", "System.Net.Http", "Npgsql"];
    private static readonly string[] Meters =
        [Telemetry.Name, "Microsoft.AspNetCore.Hosting", "Microsoft.AspNetCore.Server.Kestrel", "System.Net.Http", "Npgsql"];

    private TracerProvider? _tracer;
    private MeterProvider? _meter;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        var exportOtlp = !string.IsNullOrWhiteSpace(configuration["OTEL_EXPORTER_OTLP_ENDPOINT"]);
        var resource = ResourceBuilder.CreateDefault().AddService(configuration["OTEL_SERVICE_NAME"] ?? "integrations");

        var tracer = Sdk.CreateTracerProviderBuilder().SetResourceBuilder(resource).AddSource(Sources);
        if (exportOtlp) tracer.AddOtlpExporter();
        _tracer = tracer.Build();

        var meter = Sdk.CreateMeterProviderBuilder().SetResourceBuilder(resource).AddMeter(Meters);
        if (exportOtlp) meter.AddOtlpExporter();
        _meter = meter.Build();
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        _tracer?.ForceFlush(2000);
        _meter?.ForceFlush(2000);
        return Task.CompletedTask;
    }

    public void Dispose()
    {
        _tracer?.Dispose();
        _meter?.Dispose();
    }
}
