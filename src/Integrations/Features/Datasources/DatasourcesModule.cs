using Carter;
using Integrations.Infrastructure.Datasources;
using Integrations.Infrastructure.Http;
using Integrations.Pipeline.Governance;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Features.Datasources;

/// <summary>The datasources area: its routes under <c>/integrations/datasources</c> and the SQL gateway.</summary>
public sealed class DatasourcesModule : ICarterModule
{
    public void AddRoutes(IEndpointRouteBuilder app)
    {
        var datasources = app.MapGroup("/integrations/datasources").RequireAuthorization()
            .WithTag("Datasources", "Datasources behind the SQL gateway: read-only, parameterised query templates run under policy, limits and audit.");
        RegisterDatasource.Map(datasources);
        ListDatasources.Map(datasources);
        GetDatasource.Map(datasources);
        UpdateDatasource.Map(datasources);
        TestDatasource.Map(datasources);
        DeleteDatasource.Map(datasources);
        DefineQuery.Map(datasources);
        ListQueries.Map(datasources);
        UpdateQuery.Map(datasources);
        DeleteQuery.Map(datasources);
        RunQuery.Map(datasources);
        RecheckQuery.Map(datasources);
    }

    /// <summary>Settings from <c>Integrations:Datasources</c>.</summary>
    public static void AddServices(IServiceCollection services, IConfiguration configuration)
    {
        services.AddSingleton(DatasourceOptions.FromConfiguration(configuration));
        services.AddSingleton<DatasourceConnections>();
        services.AddSingleton<SqlGateway>();
        services.AddScoped<DatasourceSignIns>();
        services.AddGovernedCallKind<RunQuery.Command, QueryCall>();
        services.AddSingleton<StoredTemplateCheck>();
        services.AddHostedService(sp => sp.GetRequiredService<StoredTemplateCheck>());
    }
}
