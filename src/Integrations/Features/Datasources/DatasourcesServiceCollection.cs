using Integrations.Infrastructure.Datasources;
using Integrations.Pipeline.Governance;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Features.Datasources;

public static class DatasourcesServiceCollection
{
    /// <summary>
    /// The SQL gateway's services (settings from <c>Integrations:Datasources</c>); the slices' handlers and validators
    /// are found by the assembly scan.
    /// </summary>
    public static IServiceCollection AddDatasources(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddSingleton(DatasourceOptions.FromConfiguration(configuration));
        services.AddSingleton<DatasourceConnections>();
        services.AddSingleton<SqlGateway>();
        services.AddScoped<DatasourcePasswords>();
        services.AddGovernedCallKind<RunQuery.Command, QueryCall>();
        services.AddSingleton<StoredTemplateCheck>();
        services.AddHostedService(sp => sp.GetRequiredService<StoredTemplateCheck>());
        return services;
    }
}
