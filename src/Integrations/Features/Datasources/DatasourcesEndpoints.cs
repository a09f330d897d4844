using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.Datasources;

/// <summary>The datasources area: /integrations/datasources, one route per operation.</summary>
public static class DatasourcesEndpoints
{
    public static IEndpointRouteBuilder MapDatasources(this IEndpointRouteBuilder app)
    {
        var datasources = app.MapGroup("/integrations/datasources").WithTags("Datasources").RequireAuthorization();
        RegisterDatasource.Map(datasources);
        ListDatasources.Map(datasources);
        GetDatasource.Map(datasources);
        TestDatasource.Map(datasources);
        DeleteDatasource.Map(datasources);
        DefineQuery.Map(datasources);
        ListQueries.Map(datasources);
        UpdateQuery.Map(datasources);
        DeleteQuery.Map(datasources);
        RunQuery.Map(datasources);
        RecheckQuery.Map(datasources);
        return app;
    }
}
