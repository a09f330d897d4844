using Carter;
using Integrations.Infrastructure.Http;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using ModelContextProtocol.Protocol;

namespace Integrations.Features.McpGateway;

/// <summary>
/// The MCP gateway area: <c>/mcp</c> (Streamable HTTP, the official SDK, stateless) and the same tools by name over
/// REST under <c>/tools</c>. Stateless means no session lives on a replica: any replica answers any request, so replicas
/// behind a load balancer need no affinity; the price is no server-initiated messages (see README, "The MCP gateway").
/// </summary>
public sealed class McpGatewayModule : ICarterModule
{
    public void AddRoutes(IEndpointRouteBuilder app)
    {
        var tools = app.MapGroup("/tools").WithTag("Tools", "The tenant's callable tools across servers by name (<server>__<tool>), and tools.invoke by name: the same governed call as the MCP gateway at /mcp.").RequireAuthorization();
        ListGatewayTools.Map(tools);
        McpGatewayEndpoint.MapInvokeByName(tools);
        app.MapMcp(McpGatewayEndpoint.Path).RequireAuthorization().ExcludeFromDescription();
        app.MapMcp($"{McpGatewayEndpoint.Path}/{{{McpGatewayEndpoint.VirtualServerRouteValue}}}").RequireAuthorization().ExcludeFromDescription();
    }

    public static void AddServices(IServiceCollection services)
    {
        services.AddSingleton<GatewayCatalog>();
        services.AddScoped<GatewayToolResolver>();
        services.AddHttpContextAccessor();
        services.AddMcpServer(o =>
            {
                o.ServerInfo = new Implementation { Name = "integrations", Title = "Integrations MCP gateway", Version = "1.0.0" };
                // No list_changed: a stateless server has no stream to send it on; clients list again instead.
                o.Capabilities = new ServerCapabilities { Tools = new ToolsCapability { ListChanged = false } };
            })
            .WithHttpTransport(o => o.Stateless = true)
            .WithListToolsHandler(McpGatewayEndpoint.ListToolsAsync)
            .WithCallToolHandler(McpGatewayEndpoint.CallToolAsync);
    }
}
