using Carter;
using Integrations.Infrastructure.Http;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Features.Telemetry;

/// <summary>The telemetry area: LLM usage reported from outside the gateway and summaries of all usage, under <c>/telemetry</c>; budget alerts, cost anomalies and the run rollup's backfill.</summary>
public sealed class TelemetryModule : ICarterModule
{
    public void AddRoutes(IEndpointRouteBuilder app)
    {
        var telemetry = app.MapGroup("/telemetry").RequireAuthorization()
            .WithTag("Telemetry", "LLM usage: records of calls made outside the gateway, and summaries of all usage (gateway and reported) from hourly rollups.");
        IngestLlmUsage.Map(telemetry);
        SummarizeLlmUsage.Map(telemetry);
    }

    /// <summary>The budget alerts, cost anomalies and run rollup backfill jobs.</summary>
    public static void AddServices(IServiceCollection services)
    {
        services.AddSingleton<BudgetAlerts>();
        services.AddHostedService(sp => sp.GetRequiredService<BudgetAlerts>());
        services.AddSingleton<CostAnomalies>();
        services.AddHostedService(sp => sp.GetRequiredService<CostAnomalies>());
        services.AddSingleton<RunHoursBackfill>();
        services.AddHostedService(sp => sp.GetRequiredService<RunHoursBackfill>());
    }
}
