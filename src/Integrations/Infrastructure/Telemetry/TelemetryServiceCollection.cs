using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using OpenTelemetry;
using OpenTelemetry.Exporter;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace Integrations.Infrastructure.Telemetry;

public static class TelemetryServiceCollection
{
    public const string OtlpEndpointSetting = "OTEL_EXPORTER_OTLP_ENDPOINT";
    public const string OtlpProtocolSetting = "OTEL_EXPORTER_OTLP_PROTOCOL";

    /// <summary>
    /// Traces and metrics of ASP.NET Core, HttpClient, Npgsql (its spans, and its meter with the connection pool's
    /// gauges) and the service's own <see cref="Telemetry"/> source and meter. With <c>OTEL_EXPORTER_OTLP_ENDPOINT</c>
    /// set, traces, metrics and logs are exported over OTLP; with <see cref="MetricsScrape.TokenSetting"/> set, metrics
    /// are also served for Prometheus at <see cref="MetricsScrape.Path"/>.
    /// </summary>
    public static IServiceCollection AddIntegrationsTelemetry(this IServiceCollection services, IConfiguration configuration)
    {
        var telemetry = services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService(configuration["OTEL_SERVICE_NAME"] ?? "integrations"))
            .WithTracing(tracing => tracing
                .AddSource(Telemetry.Name).AddAspNetCoreInstrumentation().AddHttpClientInstrumentation().AddNpgsql())
            .WithMetrics(metrics =>
            {
                metrics.AddMeter(Telemetry.Name).AddAspNetCoreInstrumentation().AddHttpClientInstrumentation().AddNpgsqlInstrumentation();
                if (MetricsScrape.IsEnabled(configuration)) metrics.AddPrometheusExporter();
            });

        if (!string.IsNullOrWhiteSpace(configuration[OtlpEndpointSetting]))
        {
            // The exporter reads every OTEL_EXPORTER_OTLP_* setting itself and appends /v1/traces, /v1/metrics and
            // /v1/logs to an endpoint that came from OTEL_EXPORTER_OTLP_ENDPOINT; only its default protocol is changed,
            // from gRPC to http/protobuf (what port 4318 speaks, and what the specification recommends as default).
            telemetry.WithLogging(configureBuilder: null, configureOptions: o =>
            {
                o.IncludeScopes = true;
                o.IncludeFormattedMessage = true;
            });
            telemetry.UseOtlpExporter();
            if (string.IsNullOrWhiteSpace(configuration[OtlpProtocolSetting]))
            {
                services.Configure<OtlpExporterOptions>(o => o.Protocol = OtlpExportProtocol.HttpProtobuf);
            }
        }
        return services;
    }
}
