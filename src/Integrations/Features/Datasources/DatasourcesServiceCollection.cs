using Integrations.Infrastructure.Datasources;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Features.Datasources;

public static class DatasourcesServiceCollection
{
    /// <summary>The SQL gateway's services; the slices' handlers and validators are found by the assembly scan.</summary>
    public static IServiceCollection AddDatasources(this IServiceCollection services)
    {
        services.AddSingleton<DatasourceConnections>();
        services.AddSingleton<SqlGateway>();
        services.AddScoped<DatasourcePasswords>();
        return services;
    }
}
