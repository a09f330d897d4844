using Integrations.Infrastructure.Vault;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Integrations.Infrastructure.Audit;

public static class AuditServices
{
    /// <summary>The request's audit trail, the audit keys (from the vault's master keys) and the anchoring of chain heads.</summary>
    public static IServiceCollection AddAuditTrail(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddScoped<AuditTrail>();
        services.AddSingleton(sp => new AuditKeys(sp.GetRequiredService<MasterKeys>()));
        services.AddSingleton(sp => new AuditAnchorFile(
            AuditAnchorFile.FromConfiguration(configuration, sp.GetService<IHostEnvironment>()), sp.GetRequiredService<AuditKeys>()));
        services.AddSingleton<AuditAnchoring>();
        services.AddHostedService(sp => sp.GetRequiredService<AuditAnchoring>());
        return services;
    }
}
