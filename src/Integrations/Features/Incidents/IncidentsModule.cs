using Carter;
using Integrations.Infrastructure.Http;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Features.Incidents;

/// <summary>The incidents area: its routes under <c>/incidents</c>, and the recorder failing calls and health checks open incidents with.</summary>
public sealed class IncidentsModule : ICarterModule
{
    public void AddRoutes(IEndpointRouteBuilder app)
    {
        var incidents = app.MapGroup("/incidents").RequireAuthorization()
            .WithTag("Incidents", "Incidents opened by failing tool calls and health checks: list, acknowledge, resolve.");
        ListIncidents.Map(incidents);
        AcknowledgeIncident.Map(incidents);
        ResolveIncident.Map(incidents);
    }

    public static void AddServices(IServiceCollection services)
    {
        services.AddSingleton<IncidentRecorder>();
    }
}
