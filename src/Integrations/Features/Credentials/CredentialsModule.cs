using Carter;
using Integrations.Infrastructure.Http;
using Integrations.Infrastructure.Vault;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Integrations.Features.Credentials;

/// <summary>The credentials area: its routes under <c>/credentials</c>, the vault, credential resolution and grants.</summary>
public sealed class CredentialsModule : ICarterModule
{
    public void AddRoutes(IEndpointRouteBuilder app)
    {
        var credentials = app.MapGroup("/credentials").RequireAuthorization()
            .WithTag("Credentials", "The vault: secrets stored encrypted and referenced as cus-vault://, the hosts each may be sent to, grants, and the access log.");
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
    }

    /// <summary>
    /// Master keys from <c>Integrations:Vault</c> (local, and AWS KMS when <c>Integrations:Vault:Kms</c> is set), checked at start-up. (The credential behavior is registered with
    /// the other behaviors, innermost.)
    /// </summary>
    public static void AddServices(IServiceCollection services, IConfiguration configuration)
    {
        services.AddSingleton(sp => MasterKeys.FromConfiguration(configuration, sp.GetService<IHostEnvironment>()));
        services.AddSingleton<LocalMasterKeyProvider>();
        services.AddSingleton<IMasterKeyProvider>(sp => sp.GetRequiredService<LocalMasterKeyProvider>());
        var kms = AwsKmsSettings.FromConfiguration(configuration);
        services.AddSingleton(kms);
        if (kms.Configured) services.AddSingleton<IMasterKeyProvider, AwsKmsMasterKeyProvider>();
        services.AddSingleton(sp => new VaultCrypto(sp.GetRequiredService<MasterKeys>(), sp.GetServices<IMasterKeyProvider>(),
            configuration[MasterKeys.ProviderKey] is { Length: > 0 } provider ? provider : LocalMasterKeyProvider.ProviderName));
        services.AddSingleton(HashiCorpVaultSettings.FromConfiguration(configuration));
        services.AddSingleton<HashiCorpVault>();
        services.AddSingleton<TenantVaults>();
        services.AddSingleton<OAuthClientTokens>();
        services.AddSingleton<MasterKeyRotation>();
        services.AddHostedService<VaultStartupCheck>();
        services.AddScoped<CredentialContext>();
        services.AddScoped<CredentialResolver>();
        services.AddScoped<CredentialGrants>();
    }
}
