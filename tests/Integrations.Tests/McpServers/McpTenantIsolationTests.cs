using Integrations.Features.McpServers;
using Integrations.Tests.Support;

namespace Integrations.Tests.McpServers;

/// <summary>Tenant B cannot see, discover, health-check, update or delete tenant A's servers or tools.</summary>
public sealed class McpTenantIsolationTests(ServiceFixture fixture) : IClassFixture<ServiceFixture>
{
    private ServiceHost Host => fixture.Host;

    [Fact]
    public async Task Another_tenants_server_and_tools_are_not_found_on_every_operation()
    {
        await using var mcp = new TestMcpServer();
        await mcp.StartAsync();
        var (a, b) = (TestEnvironment.NewTenant(), TestEnvironment.NewTenant());
        var registered = (await Host.SendAsync(new RegisterMcpServer.Command("a-server", mcp.Endpoint.ToString()), a)).Value;
        var serverId = registered.Server.Id;
        var tool = registered.Tools[0];
        var bOwn = (await Host.SendAsync(new RegisterMcpServer.Command("b-server", mcp.Endpoint.ToString()), b)).Value;
        mcp.ClearReceived();

        Assert.Equal("not_found", (await Host.SendAsync(new GetMcpServer.Query(serverId), b)).Error?.Code);
        Assert.Equal("not_found", (await Host.SendAsync(new DiscoverMcpServer.Command(serverId), b)).Error?.Code);
        Assert.Equal("not_found", (await Host.SendAsync(new CheckMcpServerHealth.Command(serverId), b)).Error?.Code);
        Assert.Equal("not_found", (await Host.SendAsync(new ListMcpServerTools.Query(serverId), b)).Error?.Code);
        Assert.Equal("not_found", (await Host.SendAsync(new UpdateMcpTool.Command(serverId, tool.Id, new(Enabled: false)), b)).Error?.Code);
        Assert.Equal("not_found", (await Host.SendAsync(new UpdateMcpTool.Command(bOwn.Server.Id, tool.Id, new(Enabled: false)), b)).Error?.Code);
        Assert.Equal("not_found", (await Host.SendAsync(new DeleteMcpServer.Command(serverId), b)).Error?.Code);
        Assert.Equal([bOwn.Server.Id], (await Host.SendAsync(new ListMcpServers.Query(), b)).Value.Items.Select(s => s.Id));

        Assert.Empty(mcp.ReceivedRequests);
        var stillThere = await Host.SendAsync(new GetMcpServer.Query(serverId), a);
        Assert.True(stillThere.IsSuccess);
        Assert.Equal(tool.Enabled, (await Host.SendAsync(new ListMcpServerTools.Query(serverId), a)).Value.Items.Single(t => t.Id == tool.Id).Enabled);
        Assert.Equal(1L, await OwnerSql.AuditCountAsync(Host.ConnectionString, b)); // B's own registration only
    }

    [Fact]
    public async Task Row_level_security_alone_hides_another_tenants_servers_and_tools()
    {
        await using var mcp = new TestMcpServer();
        await mcp.StartAsync();
        var a = TestEnvironment.NewTenant();
        Assert.True((await Host.SendAsync(new RegisterMcpServer.Command("a-server", mcp.Endpoint.ToString()), a)).IsSuccess);

        await using var connection = await Host.DataSource.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await using (var set = new Npgsql.NpgsqlCommand("SELECT set_config('role', 'integrations_app', true), set_config('app.tenant_id', 'someone-else', true)", connection, transaction))
        {
            await set.ExecuteNonQueryAsync();
        }
        await using var count = new Npgsql.NpgsqlCommand(
            "SELECT (SELECT count(*) FROM mcp_servers WHERE tenant_id = @a) + (SELECT count(*) FROM mcp_tools WHERE tenant_id = @a)", connection, transaction);
        count.Parameters.AddWithValue("a", a);

        Assert.Equal(0L, (long)(await count.ExecuteScalarAsync())!);
    }
}
