using Carter;
using Integrations.Infrastructure.Http;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Features.Integrations;

/// <summary>The integrations area (BYOK LLM providers): its routes under <c>/integrations</c>, the provider probe and the health sweep.</summary>
public sealed class IntegrationsModule : ICarterModule
{
    public void AddRoutes(IEndpointRouteBuilder app)
    {
        var integrations = app.MapGroup("/integrations").RequireAuthorization()
            .WithTag("Integrations", "BYOK LLM provider integrations: a provider, a base URL, a credential reference from the vault, limits and allowed models; enabled, disabled and health-checked.");
        CreateIntegration.Map(integrations);
        QueryIntegrations.Map(integrations);
        GetIntegration.Map(integrations);
        UpdateIntegration.Map(integrations);
        EnableIntegration.Map(integrations);
        DisableIntegration.Map(integrations);
        DeleteIntegration.Map(integrations);
        CheckIntegrationHealth.Map(integrations);
    }

    /// <summary>Settings from <c>Integrations:Health</c>.</summary>
    public static void AddServices(IServiceCollection services, IConfiguration configuration)
    {
        services.AddSingleton(HealthCheckSettings.FromConfiguration(configuration));
        services.AddSingleton<ProviderHealthProbe>();
        services.AddSingleton<IntegrationHealthSweep>();
        services.AddHostedService(sp => sp.GetRequiredService<IntegrationHealthSweep>());
    }
}
