using Integrations.Features.Incidents;
using Integrations.Features.Policies;
using Integrations.Infrastructure.Database;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Infrastructure.Governance;

/// <summary>Tool policies, rate limits and incidents: the services the governed calls share, and their routes.</summary>
public static class GovernanceServices
{
    public static IServiceCollection AddGovernance(this IServiceCollection services)
    {
        services.AddSingleton<ChangeNotifications>();
        services.AddSingleton<ToolPolicyStore>();
        services.AddSingleton<IncidentRecorder>();
        services.AddScoped<IncidentTransition>();
        return services;
    }

    public static IEndpointRouteBuilder MapGovernanceApi(this IEndpointRouteBuilder app)
    {
        var policies = app.MapGroup("/policies").WithTags("Policies").RequireAuthorization();
        GetToolPolicy.Map(policies);
        UpdateToolPolicy.Map(policies);
        GetCredentialPolicy.Map(policies);
        UpdateCredentialPolicy.Map(policies);

        var incidents = app.MapGroup("/incidents").WithTags("Incidents").RequireAuthorization();
        ListIncidents.Map(incidents);
        AcknowledgeIncident.Map(incidents);
        ResolveIncident.Map(incidents);
        return app;
    }
}
