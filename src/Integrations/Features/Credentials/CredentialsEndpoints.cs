using Integrations.Features.Integrations;
using Integrations.Infrastructure.Vault;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Integrations.Features.Credentials;

/// <summary>The credentials area: its routes, and the vault, resolution and health-check services it brings.</summary>
public static class CredentialsEndpoints
{
    public static IEndpointRouteBuilder MapCredentialsApi(this IEndpointRouteBuilder app)
    {
        var credentials = app.MapGroup("/credentials").WithTags("Credentials").RequireAuthorization();
        StoreCredential.Map(credentials);
        ListCredentials.Map(credentials);
        GetCredential.Map(credentials);
        RotateCredential.Map(credentials);
        UpdateCredential.Map(credentials);
        DeleteCredential.Map(credentials);
        GrantCredential.Map(credentials);
        RevokeCredentialGrant.Map(credentials);
        ListCredentialAccessLog.Map(credentials);
        EncryptCredential.Map(credentials);

        // integrations.check_health belongs to the integrations area's routes but arrives with the vault.
        var integrations = app.MapGroup("/integrations").WithTags("Integrations").RequireAuthorization();
        CheckIntegrationHealth.Map(integrations);
        return app;
    }

    /// <summary>
    /// The vault (master keys from <c>Integrations:Vault</c>, checked at start-up), credential resolution and grants,
    /// the provider probe and the health sweep. (The credential behavior is registered with the other behaviors, innermost.)
    /// </summary>
    public static IServiceCollection AddCredentials(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddSingleton(sp => MasterKeys.FromConfiguration(configuration, sp.GetService<IHostEnvironment>()));
        services.AddSingleton<VaultCrypto>();
        services.AddSingleton<MasterKeyRotation>();
        services.AddHostedService<VaultStartupCheck>();
        services.AddScoped<CredentialContext>();
        services.AddScoped<CredentialResolver>();
        services.AddScoped<CredentialGrants>();

        services.AddSingleton(HealthCheckSettings.FromConfiguration(configuration));
        services.AddSingleton<ProviderHealthProbe>();
        services.AddSingleton<IntegrationHealthSweep>();
        services.AddHostedService(sp => sp.GetRequiredService<IntegrationHealthSweep>());
        return services;
    }
}
