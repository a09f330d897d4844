using System.Net;
using Integrations.Features.McpServers;
using Integrations.Infrastructure.Network;
using Integrations.Tests.Support;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Tests.McpServers;

/// <summary>Registration and every later connection refuse internal addresses when the configuration trusts no host.</summary>
public sealed class McpSsrfTests : IAsyncLifetime
{
    private static readonly Dictionary<string, string?> NothingTrusted = new()
    {
        ["Integrations:Network:EgressAllow:0"] = "",
        ["Integrations:Network:EgressAllow:1"] = "",
        ["Integrations:Mcp:RequestTimeout"] = "00:00:02",
    };

    private ServiceHost _host = null!;

    public async Task InitializeAsync() => _host = await ServiceHost.StartAsync(NothingTrusted);

    public async Task DisposeAsync() => await _host.DisposeAsync();

    public static TheoryData<string> Attacks() =>
    [
        "http://127.0.0.1", "http://localhost", "http://10.0.0.1", "http://172.16.0.1", "http://192.168.1.1",
        "http://169.254.169.254", "http://100.64.0.1", "http://[::1]", "http://[::ffff:169.254.169.254]", "http://[fd00::1]",
        "http://2852039166", "http://0x7f000001", "http://0177.0.0.1", "file:///etc/passwd", "gopher://x",
        // The same addresses over https, so the address rules (not only the plain-http rule) are what refuses them.
        "https://127.0.0.1/mcp", "https://localhost/mcp", "https://10.0.0.1/mcp", "https://172.16.0.1/mcp", "https://192.168.1.1/mcp",
        "https://169.254.169.254/mcp", "https://100.64.0.1/mcp", "https://[::1]/mcp", "https://[::ffff:169.254.169.254]/mcp",
        "https://[fd00::1]/mcp", "https://2852039166/mcp", "https://0x7f000001/mcp", "https://0177.0.0.1/mcp",
        // IPv6 forms that carry or translate an internal IPv4 address, and special-purpose blocks beyond RFC 1918.
        "https://[64:ff9b:1::a9fe:a9fe]/mcp", "https://[::ffff:0:7f00:1]/mcp", "https://[2001:0:808:808::80ff:fffe]/mcp",
        "https://[64:ff9b::a00:1]/mcp", "https://[2002:7f00:1::]/mcp", "https://[::808:808]/mcp", "https://192.88.99.1/mcp",
        "https://[100::1]/mcp", "https://[5f00::1]/mcp", "https://[3fff::1]/mcp",
        // user info and fragments are refused for every destination
        "https://user:pw@mcp.example.com/mcp", "https://mcp.example.com/mcp#x",
    ];

    [Theory]
    [MemberData(nameof(Attacks))]
    public async Task Register_refuses_internal_and_non_http_urls_with_ssrf_blocked(string url)
    {
        var tenant = TestEnvironment.NewTenant();

        var result = await _host.SendAsync(new RegisterMcpServer.Command("attack", url), tenant);

        Assert.Equal(url.Contains('@') || url.Contains('#') ? ("validation_failed", 400) : ("ssrf_blocked", 422), (result.Error?.Code, result.Error?.Status));
        Assert.Equal(0L, await OwnerSql.ScalarAsync<long>(_host.ConnectionString, "SELECT count(*) FROM mcp_servers WHERE tenant_id = @tenant", new { tenant }));
        Assert.Equal(0L, await OwnerSql.AuditCountAsync(_host.ConnectionString, tenant));
    }

    [Fact]
    public async Task A_name_that_resolves_to_a_public_address_at_the_check_but_to_loopback_at_connect_is_refused()
    {
        await using var mcp = new TestMcpServer();
        await mcp.StartAsync();
        var lookups = 0;
        var guard = new SsrfGuard(new EgressAllowList([]))
        {
            Resolve = (_, _) => Task.FromResult(Interlocked.Increment(ref lookups) == 1
                ? new[] { IPAddress.Parse("93.184.216.34") }
                : new[] { IPAddress.Loopback }),
        };
        await using var host = await ServiceHost.StartAsync(NothingTrusted, services => services.AddSingleton(guard));
        var tenant = TestEnvironment.NewTenant();

        var result = await host.SendAsync(new RegisterMcpServer.Command("rebinding", $"https://rebind.example:{mcp.Endpoint.Port}/mcp"), tenant);

        Assert.Equal("ssrf_blocked", result.Error?.Code);
        Assert.Contains("127.0.0.1", result.Error!.Detail);
        Assert.True(lookups >= 2, "the connection resolved the name again instead of trusting the first answer");
        Assert.Empty(mcp.ReceivedRequests);
    }

    [Fact]
    public async Task Every_later_connection_is_checked_again_so_a_server_whose_name_now_points_inside_is_refused()
    {
        await using var mcp = new TestMcpServer();
        await mcp.StartAsync();
        var guard = new SsrfGuard(new EgressAllowList([])) { Resolve = (_, _) => Task.FromResult(new[] { IPAddress.Loopback }) };
        await using var host = await ServiceHost.StartAsync(NothingTrusted, services => services.AddSingleton(guard));
        var tenant = TestEnvironment.NewTenant();
        // A server registered while its name still pointed at a public address.
        var id = Guid.CreateVersion7();
        await OwnerSql.ExecuteAsync(host.ConnectionString,
            "INSERT INTO mcp_servers (id, tenant_id, name, url, status) VALUES (@id, @tenant, 'was-public', @url, 'active')",
            new { id, tenant, url = $"https://moved.example:{mcp.Endpoint.Port}/mcp" });

        var discovered = await host.SendAsync(new DiscoverMcpServer.Command(id), tenant);
        var health = await host.SendAsync(new CheckMcpServerHealth.Command(id), tenant);

        Assert.Equal("ssrf_blocked", discovered.Error?.Code);
        Assert.Equal("unreachable", health.Value.Status);
        Assert.Equal("ssrf_blocked", health.Value.ErrorCode);
        Assert.Empty(mcp.ReceivedRequests);
    }
}
