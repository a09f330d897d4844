using Carter;
using Integrations.Infrastructure.Http;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Features.Policies;

/// <summary>The policies area: the tenant's tool and credential policies under <c>/policies</c>, and the store every replica reads it from.</summary>
public sealed class PoliciesModule : ICarterModule
{
    public void AddRoutes(IEndpointRouteBuilder app)
    {
        var policies = app.MapGroup("/policies").RequireAuthorization()
            .WithTag("Policies", "The tenant's tool policy (risk ceiling, allow and deny lists, rate limits) and credential policy.");
        GetToolPolicy.Map(policies);
        UpdateToolPolicy.Map(policies);
        GetCredentialPolicy.Map(policies);
        UpdateCredentialPolicy.Map(policies);
    }

    public static void AddServices(IServiceCollection services)
    {
        services.AddSingleton<ToolPolicyStore>();
    }
}
