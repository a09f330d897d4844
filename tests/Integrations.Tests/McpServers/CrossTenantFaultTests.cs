using System.Collections.Concurrent;
using System.Text.Json;
using Integrations.Features.Audit;
using Integrations.Features.McpServers;
using Integrations.Tests.Support;

namespace Integrations.Tests.McpServers;

/// <summary>
/// One tenant's calls whose audit writes PostgreSQL refuses (a NUL in <c>run_id</c>, sent below the HTTP edge that
/// refuses it) while another tenant calls at full rate: the other tenant sees no error, and each of its calls is closed.
/// </summary>
public sealed class CrossTenantFaultTests(ServiceFixture fixture) : IClassFixture<ServiceFixture>, IAsyncLifetime
{
    private ServiceHost Host => fixture.Host;
    private TestMcpServer _mcp = null!;

    public async Task InitializeAsync()
    {
        _mcp = new TestMcpServer();
        await _mcp.StartAsync();
    }

    public async Task DisposeAsync() => await _mcp.DisposeAsync();

    private async Task<(Guid Server, Guid Echo)> RegisterAsync(string tenant)
    {
        var registered = await Host.SendAsync(new RegisterMcpServer.Command("test", _mcp.Endpoint.ToString(), null), tenant);
        Assert.True(registered.IsSuccess, registered.Error?.Detail);
        return (registered.Value.Server.Id, registered.Value.Tools.Single(t => t.Name == "echo").Id);
    }

    [Fact]
    public async Task Another_tenants_refused_audit_writes_break_none_of_a_tenants_calls_and_leave_none_unclosed()
    {
        var victim = TestEnvironment.NewTenant();
        var attacker = TestEnvironment.NewTenant();
        var (victimServer, victimEcho) = await RegisterAsync(victim);
        var (attackerServer, attackerEcho) = await RegisterAsync(attacker);
        var arguments = JsonDocument.Parse("""{"message":"hi"}""").RootElement.Clone();
        var victimErrors = new ConcurrentBag<string>();
        var victimCalls = 0;
        var attackerCalls = 0;
        // until both sides have done enough (a busy machine is slow), within a minute
        var deadline = DateTime.UtcNow.AddSeconds(60);
        bool Running() => DateTime.UtcNow < deadline && (Volatile.Read(ref victimCalls) < 200 || Volatile.Read(ref attackerCalls) < 40);

        async Task VictimAsync()
        {
            while (Running())
            {
                try
                {
                    var result = await Host.SendAsync(new InvokeMcpTool.Command(victimServer, victimEcho, arguments, "run-ok"), victim);
                    if (!result.IsSuccess || result.Value.Outcome != "completed") victimErrors.Add(result.Error?.Code ?? result.Value.Outcome);
                    Interlocked.Increment(ref victimCalls);
                }
                catch (Exception e)
                {
                    victimErrors.Add(e.Message);
                }
            }
        }

        async Task AttackerAsync(int i)
        {
            while (Running())
            {
                try
                {
                    await Host.SendAsync(new InvokeMcpTool.Command(attackerServer, attackerEcho, arguments, i % 2 == 0 ? $"run\0{i}" : "run-ok"), attacker);
                }
                catch (Exception)
                {
                    // the attacker's own calls may fail any way they like
                }
                Interlocked.Increment(ref attackerCalls);
            }
        }

        await Task.WhenAll(Enumerable.Range(0, 12).Select(_ => Task.Run(VictimAsync)).Concat(Enumerable.Range(0, 4).Select(i => Task.Run(() => AttackerAsync(i)))));

        Assert.True(victimCalls >= 200 && attackerCalls >= 40, $"{victimCalls} calls, {attackerCalls} faulty calls");
        Assert.Empty(victimErrors.Distinct());
        var unclosed = await OwnerSql.QueryAsync<string>(Host.ConnectionString, """
            SELECT correlation_id FROM audit_events WHERE tenant_id = @victim AND action LIKE 'tool.invocation.%'
            GROUP BY correlation_id
            HAVING count(*) FILTER (WHERE action = 'tool.invocation.requested') <> count(*) FILTER (WHERE action IN ('tool.invocation.completed', 'tool.invocation.failed'))
            """, new { victim });
        Assert.Empty(unclosed);
        Assert.Equal(victimCalls, await OwnerSql.ScalarAsync<long>(Host.ConnectionString,
            "SELECT count(*) FROM audit_events WHERE tenant_id = @victim AND action = 'tool.invocation.completed'", new { victim }));
        Assert.True((await Host.SendAsync(new VerifyAuditChain.Query(), victim)).Value.Valid);
    }
}
