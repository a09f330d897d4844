using Carter;
using Integrations.Common;
using Integrations.Infrastructure.Http;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using ModelContextProtocol.AspNetCore;
using ModelContextProtocol.Protocol;
using ModelContextProtocol.Server;

namespace Integrations.Features.McpGateway;

/// <summary>
/// The MCP gateway area: <c>/mcp</c> (Streamable HTTP, the official SDK) and the same tools by name over REST under
/// <c>/tools</c>. Clients of the sessionless 2026 revision are served per request; clients of the <c>initialize</c>
/// handshake get a session (for <c>notifications/tools/list_changed</c>) that any replica can continue, since what the
/// handshake established is in the database (<see cref="GatewaySessionStore"/>): replicas behind a load balancer need
/// no affinity (see README, "The MCP gateway").
/// </summary>
public sealed class McpGatewayModule : ICarterModule
{
    public void AddRoutes(IEndpointRouteBuilder app)
    {
        var tools = app.MapGroup("/tools").WithTag("Tools", "The tenant's callable tools across servers by name (<server>__<tool>), and tools.invoke by name: the same governed call as the MCP gateway at /mcp.").RequireAuthorization();
        ListGatewayTools.Map(tools);
        McpGatewayEndpoint.MapInvokeByName(tools);
        var servers = app.MapGroup("/integrations/mcp-servers").WithTags("MCP servers").RequireAuthorization();
        ListServerResources.Map(servers);
        ReadServerResource.Map(servers);
        ListServerPrompts.Map(servers);
        GetServerPrompt.Map(servers);
        app.MapMcp(McpGatewayEndpoint.Path).RequireAuthorization().ExcludeFromDescription();
        app.MapMcp($"{McpGatewayEndpoint.Path}/{{{McpGatewayEndpoint.VirtualServerRouteValue}}}").RequireAuthorization().ExcludeFromDescription();
    }

    public static void AddServices(IServiceCollection services)
    {
        services.AddSingleton<GatewayCatalog>();
        services.AddScoped<GatewayToolResolver>();
        services.AddHttpContextAccessor();
        services.AddSingleton<ToolListChanges>();
        services.AddSingleton<GatewaySessionStore>();
        services.AddMcpServer(o =>
            {
                o.ServerInfo = new Implementation { Name = "integrations", Title = "Integrations MCP gateway", Version = "1.0.0" };
                // Sessions get list_changed on their GET stream; the SDK drops the flag for requests it serves statelessly.
                o.Capabilities = new ServerCapabilities
                {
                    Tools = new ToolsCapability { ListChanged = true },
                    Resources = new ResourcesCapability(),
                    Prompts = new PromptsCapability(),
                };
            })
            .WithHttpTransport(o =>
            {
                o.SessionMode = HttpServerSessionMode.StatefulForInitializeClients;
                // The one hook that sees a session both start and end (experimental in 2.4.0).
#pragma warning disable MCPEXP002
                o.RunSessionHandler = RunSessionAsync;
#pragma warning restore MCPEXP002
            })
            .WithListToolsHandler(McpGatewayEndpoint.ListToolsAsync)
            .WithCallToolHandler(McpGatewayEndpoint.CallToolAsync)
            .WithListResourcesHandler(McpGatewayPassthrough.ListResourcesAsync)
            .WithReadResourceHandler(McpGatewayPassthrough.ReadResourceAsync)
            .WithListPromptsHandler(McpGatewayPassthrough.ListPromptsAsync)
            .WithGetPromptHandler(McpGatewayPassthrough.GetPromptAsync);
        services.AddOptions<HttpServerTransportOptions>()
            // Obsolete in 2.4.0 with stateful mode itself (kept for 2025-11-25 clients, which is what we use it for).
#pragma warning disable MCP9006
            .Configure<GatewaySessionStore>((o, store) => o.SessionMigrationHandler = store);
#pragma warning restore MCP9006
    }

    /// <summary>
    /// Runs an MCP session; a stateful one (an <c>initialize</c> client's) is watched for changes to what its tenant
    /// may call while it lives. Called while the request that opened the session is still being served.
    /// </summary>
    private static async Task RunSessionAsync(HttpContext context, McpServer server, CancellationToken ct)
    {
        if (server.SessionId is null || context.RequestServices.GetRequiredService<CallerContext>().Current is not { } caller)
        {
            await server.RunAsync(ct);
            return;
        }
        using var ended = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var watch = context.RequestServices.GetRequiredService<ToolListChanges>()
            .WatchAsync(server, caller.TenantId, context.GetRouteValue(McpGatewayEndpoint.VirtualServerRouteValue) as string, ended.Token);
        try
        {
            await server.RunAsync(ct);
        }
        finally
        {
            await ended.CancelAsync();
            await watch;
        }
    }
}
