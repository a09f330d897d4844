using Carter;
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
        var incidents = app.MapGroup("/incidents").WithTags("Incidents").RequireAuthorization();
        ListIncidents.Map(incidents);
        AcknowledgeIncident.Map(incidents);
        ResolveIncident.Map(incidents);
    }

    public static void AddServices(IServiceCollection services)
    {
        services.AddSingleton<IncidentRecorder>();
    }
}
