using System.Text.Json;
using Integrations.Features.McpServers;
using Integrations.Infrastructure.Mcp;
using Integrations.Tests.Support;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Tests.McpServers;

/// <summary>The mcp_servers.* slices against the real reference server (@modelcontextprotocol/server-everything from npm).</summary>
[Collection(EverythingServerCollection.Name)]
public sealed class ReferenceServerTests(EverythingServer everything, ServiceFixture fixture) : IClassFixture<ServiceFixture>
{
    private ServiceHost Host => fixture.Host;

    [Fact]
    public async Task Register_health_discover_and_delete_the_reference_server()
    {
        var tenant = TestEnvironment.NewTenant();

        var registered = await Host.SendAsync(new RegisterMcpServer.Command("everything", everything.Endpoint.ToString()), tenant);

        Assert.True(registered.IsSuccess, registered.Error?.Detail);
        var server = registered.Value.Server;
        Assert.Equal("active", server.Status);
        Assert.Equal("mcp-servers/everything", server.ServerName);
        Assert.False(string.IsNullOrEmpty(server.ProtocolVersion));
        Assert.True(server.Capabilities.TryGetProperty("tools", out _));
        var tools = registered.Value.Tools.ToDictionary(t => t.Name);
        Assert.Equal(tools.Count, server.ToolCount);

        var echo = tools["echo"];
        Assert.Equal("string", echo.InputSchema.GetProperty("properties").GetProperty("message").GetProperty("type").GetString());
        Assert.Equal(["message"], echo.InputSchema.GetProperty("required").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(ToolRisk.Low, echo.RiskLevel);
        Assert.True(echo.Enabled, "low is within the default ceiling");
        Assert.True(echo.Annotations!.Value.GetProperty("readOnlyHint").GetBoolean());

        var sum = tools["get-sum"];
        Assert.Equal(["a", "b"], sum.InputSchema.GetProperty("properties").EnumerateObject().Select(p => p.Name).Order());
        Assert.Equal(ToolRisk.Low, sum.RiskLevel);
        Assert.True(sum.Enabled);

        var longRunning = tools["trigger-long-running-operation"];
        Assert.Equal(ToolRisk.High, longRunning.RiskLevel);
        Assert.False(longRunning.Enabled, "high is above the default ceiling, so it waits disabled");

        Assert.All(tools.Values, t =>
        {
            Assert.Equal(McpTool.Active, t.Status);
            Assert.Matches("^[0-9a-f]{64}$", t.DefinitionHash);
            Assert.Equal(t.DefinitionHash, t.ApprovedHash);
        });
        Assert.Equal(1L, await OwnerSql.AuditCountAsync(Host.ConnectionString, tenant, "mcp_servers.register"));

        var health = await Host.SendAsync(new CheckMcpServerHealth.Command(server.Id), tenant);
        Assert.True(health.IsSuccess, health.Error?.Detail);
        Assert.Equal("active", health.Value.Status);
        Assert.Equal("ping", health.Value.Method);
        Assert.NotNull(health.Value.LatencyMs);

        var discovered = await Host.SendAsync(new DiscoverMcpServer.Command(server.Id), tenant);
        Assert.True(discovered.IsSuccess, discovered.Error?.Detail);
        Assert.Empty(discovered.Value.Added);
        Assert.Empty(discovered.Value.Drifted);
        Assert.Empty(discovered.Value.Removed);
        Assert.Equal(tools.Count, discovered.Value.Unchanged);

        var sessions = Host.Services.GetRequiredService<McpSessions>();
        Assert.True(sessions.HasSession(tenant, server.Id), "health and discovery share the pooled session");

        Assert.True((await Host.SendAsync(new DeleteMcpServer.Command(server.Id), tenant)).IsSuccess);
        Assert.False(sessions.HasSession(tenant, server.Id));
        Assert.Equal("not_found", (await Host.SendAsync(new GetMcpServer.Query(server.Id), tenant)).Error?.Code);
        Assert.Equal("not_found", (await Host.SendAsync(new ListMcpServerTools.Query(server.Id), tenant)).Error?.Code);
        Assert.Empty((await Host.SendAsync(new ListMcpServers.Query(), tenant)).Value.Items);

        var again = await Host.SendAsync(new RegisterMcpServer.Command("everything-again", everything.Endpoint.ToString()), tenant);
        Assert.True(again.IsSuccess, "a deleted server's URL can be registered again");
    }

    [Fact]
    public async Task Registering_the_same_url_twice_is_a_conflict_and_writes_nothing_more()
    {
        var tenant = TestEnvironment.NewTenant();
        Assert.True((await Host.SendAsync(new RegisterMcpServer.Command("first", everything.Endpoint.ToString()), tenant)).IsSuccess);

        var second = await Host.SendAsync(new RegisterMcpServer.Command("second", everything.Endpoint.ToString()), tenant);

        Assert.Equal("conflict", second.Error?.Code);
        Assert.Equal(409, second.Error?.Status);
        Assert.Single((await Host.SendAsync(new ListMcpServers.Query(), tenant)).Value.Items);
        Assert.Equal(1L, await OwnerSql.AuditCountAsync(Host.ConnectionString, tenant));
        var otherTenant = await Host.SendAsync(new RegisterMcpServer.Command("first", everything.Endpoint.ToString()), TestEnvironment.NewTenant());
        Assert.True(otherTenant.IsSuccess, "another tenant may register the same URL");
    }

    [Fact]
    public async Task Tools_list_filters_by_risk_and_enabled_and_pages()
    {
        var tenant = TestEnvironment.NewTenant();
        var server = (await Host.SendAsync(new RegisterMcpServer.Command("everything", everything.Endpoint.ToString()), tenant)).Value;
        var total = server.Tools.Count;

        var seen = new List<McpTool.Response>();
        string? cursor = null;
        do
        {
            var page = (await Host.SendAsync(new ListMcpServerTools.Query(server.Server.Id, Limit: 5, Cursor: cursor), tenant)).Value;
            Assert.True(page.Items.Count <= 5);
            seen.AddRange(page.Items);
            cursor = page.NextCursor;
        } while (cursor is not null);
        Assert.Equal(total, seen.Select(t => t.Id).Distinct().Count());

        var low = (await Host.SendAsync(new ListMcpServerTools.Query(server.Server.Id, RiskLevel: ToolRisk.Low), tenant)).Value.Items;
        Assert.Contains(low, t => t.Name == "get-sum");
        Assert.All(low, t => Assert.Equal(ToolRisk.Low, t.RiskLevel));
        var disabled = (await Host.SendAsync(new ListMcpServerTools.Query(server.Server.Id, Enabled: false), tenant)).Value.Items;
        Assert.All(disabled, t => Assert.False(t.Enabled));
        Assert.Contains(disabled, t => t.Name == "trigger-long-running-operation");
        Assert.Equal(JsonValueKind.Object, seen[0].InputSchema.ValueKind);
    }
}
