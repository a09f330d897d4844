using Carter;
using Integrations.Infrastructure.Http;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.VirtualServers;

/// <summary>The virtual servers area: named subsets of a tenant's tools under <c>/virtual-servers</c>, served by the MCP gateway at <c>/mcp/{name}</c>.</summary>
public sealed class VirtualServersModule : ICarterModule
{
    public void AddRoutes(IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/virtual-servers").WithTag("Virtual servers", "Named subsets of the tenant's tools (by id, server, name pattern, risk ceiling) served as their own MCP endpoint at /mcp/{name}; they only narrow the policy.").RequireAuthorization();
        CreateVirtualServer.Map(group);
        ListVirtualServers.Map(group);
        GetVirtualServer.Map(group);
        UpdateVirtualServer.Map(group);
        DeleteVirtualServer.Map(group);
    }
}
