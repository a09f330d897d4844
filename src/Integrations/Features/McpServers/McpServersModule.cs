using Carter;
using Integrations.Infrastructure.Http;
using Integrations.Infrastructure.Mcp;
using Integrations.Pipeline.Governance;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Features.McpServers;

/// <summary>The MCP servers area: its routes under <c>/integrations/mcp-servers</c>, the session pool and the health sweep.</summary>
public sealed class McpServersModule : ICarterModule
{
    public void AddRoutes(IEndpointRouteBuilder app)
    {
        var servers = app.MapGroup("/integrations/mcp-servers").RequireAuthorization()
            .WithTag("MCP servers", "MCP servers and their tools: registration, discovery with pinned tool definitions and drift, health, and tools.invoke, the governed tool call.");
        RegisterMcpServer.Map(servers);
        ListMcpServers.Map(servers);
        GetMcpServer.Map(servers);
        DeleteMcpServer.Map(servers);
        DisableMcpServer.Map(servers);
        EnableMcpServer.Map(servers);
        DiscoverMcpServer.Map(servers);
        UpdateMcpServer.Map(servers);
        CheckMcpServerHealth.Map(servers);
        GetMcpServerHealth.Map(servers);
        ListMcpServerTools.Map(servers);
        GetMcpTool.Map(servers);
        GetMcpToolDrift.Map(servers);
        UpdateMcpTool.Map(servers);
        InvokeMcpTool.Map(servers);
        ListToolInvocations.Map(servers);

        var invocations = app.MapGroup("/invocations").WithTags("MCP servers").RequireAuthorization();
        ListToolInvocations.MapTenantWide(invocations);
        GetInvocation.Map(invocations);
    }

    /// <summary>Settings from <c>Integrations:Mcp</c>.</summary>
    public static void AddServices(IServiceCollection services, IConfiguration configuration)
    {
        services.AddSingleton(McpOptions.FromConfiguration(configuration));
        services.AddSingleton<McpSessions>();
        services.AddGovernedCallKind<InvokeMcpTool.Command, ToolCall>();
        services.AddSingleton<McpHealthSweep>();
        services.AddHostedService(sp => sp.GetRequiredService<McpHealthSweep>());
    }
}
