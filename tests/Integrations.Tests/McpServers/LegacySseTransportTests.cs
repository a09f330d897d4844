using Integrations.Features.McpServers;
using Integrations.Infrastructure.Mcp;
using Integrations.Tests.Support;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Tests.McpServers;

/// <summary>A server that only speaks the legacy HTTP+SSE transport: registration falls back to it and keeps using it.</summary>
public sealed class LegacySseTransportTests(EverythingSseServer sse, ServiceFixture fixture)
    : IClassFixture<EverythingSseServer>, IClassFixture<ServiceFixture>
{
    private ServiceHost Host => fixture.Host;

    [Fact]
    public async Task Registration_falls_back_to_sse_and_discovery_health_and_delete_use_it()
    {
        var tenant = TestEnvironment.NewTenant();

        var registered = await Host.SendAsync(new RegisterMcpServer.Command("everything-sse", sse.Endpoint.ToString()), tenant);

        Assert.True(registered.IsSuccess, registered.Error?.Detail);
        var server = registered.Value.Server;
        Assert.Equal((McpTransports.Sse, "active"), (server.Transport, server.Status));
        Assert.Contains(registered.Value.Tools, t => t.Name == "echo" && t.RiskLevel == ToolRisk.Low);
        Assert.Contains(registered.Value.Tools, t => t.Name == "get-sum" && t.RiskLevel == ToolRisk.Low);

        var health = await Host.SendAsync(new CheckMcpServerHealth.Command(server.Id), tenant);
        Assert.Equal(("active", "ping"), (health.Value.Status, health.Value.Method));
        var discovered = await Host.SendAsync(new DiscoverMcpServer.Command(server.Id), tenant);
        Assert.True(discovered.IsSuccess, discovered.Error?.Detail);
        Assert.Empty(discovered.Value.Drifted);
        Assert.Equal(registered.Value.Tools.Count, discovered.Value.Unchanged);

        var sessions = Host.Services.GetRequiredService<McpSessions>();
        Assert.True(sessions.HasSession(tenant, server.Id));
        Assert.True((await Host.SendAsync(new DeleteMcpServer.Command(server.Id), tenant)).IsSuccess);
        Assert.False(sessions.HasSession(tenant, server.Id));
    }

    [Fact]
    public async Task A_streamable_http_server_is_not_registered_as_sse()
    {
        await using var mcp = new TestMcpServer();
        await mcp.StartAsync();

        var registered = await Host.SendAsync(new RegisterMcpServer.Command("modern", mcp.Endpoint.ToString()), TestEnvironment.NewTenant());

        Assert.Equal(McpTransports.StreamableHttp, registered.Value.Server.Transport);
        Assert.DoesNotContain(mcp.ReceivedRequests, r => r.Method == "GET");
    }
}
