using Carter;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.VirtualServers;

/// <summary>The virtual servers area: named subsets of a tenant's tools under <c>/virtual-servers</c>, served by the MCP gateway at <c>/mcp/{name}</c>.</summary>
public sealed class VirtualServersModule : ICarterModule
{
    public void AddRoutes(IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/virtual-servers").WithTags("Virtual servers").RequireAuthorization();
        CreateVirtualServer.Map(group);
        ListVirtualServers.Map(group);
        GetVirtualServer.Map(group);
        UpdateVirtualServer.Map(group);
        DeleteVirtualServer.Map(group);
    }
}
