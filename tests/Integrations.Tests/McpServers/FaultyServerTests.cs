using System.Diagnostics;
using Integrations.Common;
using Integrations.Features.Credentials;
using Integrations.Features.McpServers;
using Integrations.Tests.Support;

namespace Integrations.Tests.McpServers;

/// <summary>
/// A service host with small MCP bounds, so fault tests stay fast. The request timeout stays generous, because healthy
/// servers are registered through it on a busy machine; the timeout test makes its own host with a 1 s bound.
/// </summary>
public sealed class FastFailingHostFixture : IAsyncLifetime
{
    public static readonly Dictionary<string, string?> Settings = new()
    {
        ["Integrations:Mcp:RequestTimeout"] = "00:00:05",
        ["Integrations:Mcp:RetryAttempts"] = "1",
        ["Integrations:Mcp:RetryDelay"] = "00:00:00.050",
        ["Integrations:Mcp:MaxResponseBytes"] = "65536",
    };

    public ServiceHost Host { get; private set; } = null!;

    public async Task InitializeAsync() => Host = await ServiceHost.StartAsync(Settings);

    public async Task DisposeAsync() => await Host.DisposeAsync();
}

/// <summary>Registration and discovery against C# MCP servers that misbehave, refuse, or want a credential.</summary>
public sealed class FaultyServerTests(FastFailingHostFixture fixture) : IClassFixture<FastFailingHostFixture>
{
    private ServiceHost Host => fixture.Host;

    private static async Task<TestMcpServer> StartAsync(Action<TestMcpServer>? configure = null)
    {
        var server = new TestMcpServer();
        configure?.Invoke(server);
        await server.StartAsync();
        return server;
    }

    private async Task AssertNothingStoredAsync(string tenant)
    {
        Assert.Equal(0L, await OwnerSql.ScalarAsync<long>(Host.ConnectionString, "SELECT count(*) FROM mcp_servers WHERE tenant_id = @tenant", new { tenant }));
        Assert.Equal(0L, await OwnerSql.ScalarAsync<long>(Host.ConnectionString, "SELECT count(*) FROM mcp_tools WHERE tenant_id = @tenant", new { tenant }));
        Assert.Equal(0L, await OwnerSql.ScalarAsync<long>(Host.ConnectionString, "SELECT count(*) FROM credential_grants WHERE tenant_id = @tenant", new { tenant }));
        Assert.Equal(0L, await OwnerSql.AuditCountAsync(Host.ConnectionString, tenant, "mcp_servers.register"));
    }

    private Task<Result<RegisterMcpServer.Response>> RegisterAsync(string tenant, TestMcpServer server, string? credentialRef = null, string? authHeader = null) =>
        Host.SendAsync(new RegisterMcpServer.Command("faulty", server.Endpoint.ToString(), credentialRef, authHeader), tenant);

    private async Task<string> StoreTokenAsync(string tenant, string secret, string type = "bearer_token")
    {
        var stored = await Host.SendAsync(new StoreCredential.Command($"mcp-token-{Guid.NewGuid():N}", type, Secret: secret), tenant);
        Assert.True(stored.IsSuccess, stored.Error?.Detail);
        return stored.Value.Reference;
    }

    [Fact]
    public async Task A_server_that_never_answers_times_out_within_the_configured_bound_and_nothing_is_stored()
    {
        await using var host = await ServiceHost.StartAsync(new Dictionary<string, string?>(FastFailingHostFixture.Settings)
        {
            ["Integrations:Mcp:RequestTimeout"] = "00:00:01",
        });
        await using var mcp = await StartAsync(s => s.Hang = true);
        var tenant = TestEnvironment.NewTenant();
        var clock = Stopwatch.StartNew();

        var result = await host.SendAsync(new RegisterMcpServer.Command("silent", mcp.Endpoint.ToString()), tenant);

        Assert.Equal("upstream_timeout", result.Error?.Code);
        Assert.Equal(504, result.Error?.Status);
        Assert.Contains("did not answer within 1 s", result.Error!.Detail);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"took {clock.Elapsed} with a 1 s bound");
        await AssertNothingStoredAsync(tenant);
    }

    [Fact]
    public async Task A_server_that_closes_the_connection_mid_response_is_an_upstream_error_and_nothing_is_stored()
    {
        await using var mcp = await StartAsync(s => s.AbortListMidResponse = true);
        var tenant = TestEnvironment.NewTenant();

        var result = await RegisterAsync(tenant, mcp);

        Assert.Equal("upstream_error", result.Error?.Code);
        Assert.Equal(502, result.Error?.Status);
        // Depending on where the stream breaks, the SDK reports a reset connection or a reply that never came.
        Assert.Matches("closed the connection|ended its response without an MCP reply", result.Error!.Detail);
        await AssertNothingStoredAsync(tenant);
    }

    [Fact]
    public async Task A_web_server_that_does_not_speak_mcp_is_an_upstream_error_saying_so()
    {
        await using var mcp = await StartAsync(s => s.RespondWithHtml = true);
        var tenant = TestEnvironment.NewTenant();

        var result = await RegisterAsync(tenant, mcp);

        Assert.Equal("upstream_error", result.Error?.Code);
        Assert.Contains("MCP", result.Error!.Detail);
        await AssertNothingStoredAsync(tenant);
    }

    [Fact]
    public async Task A_server_answering_500_is_an_upstream_error_with_the_status()
    {
        await using var mcp = await StartAsync(s => s.ForcedStatusCode = 500);
        var tenant = TestEnvironment.NewTenant();

        var result = await RegisterAsync(tenant, mcp);

        Assert.Equal("upstream_error", result.Error?.Code);
        Assert.Contains("HTTP 500", result.Error!.Detail);
        await AssertNothingStoredAsync(tenant);
    }

    [Fact]
    public async Task A_port_nobody_listens_on_is_upstream_unreachable()
    {
        var mcp = await StartAsync();
        var endpoint = mcp.Endpoint;
        await mcp.DisposeAsync();
        var tenant = TestEnvironment.NewTenant();

        var result = await Host.SendAsync(new RegisterMcpServer.Command("gone", endpoint.ToString()), tenant);

        Assert.Equal("upstream_unreachable", result.Error?.Code);
        Assert.Contains("connection refused", result.Error!.Detail);
        await AssertNothingStoredAsync(tenant);
    }

    [Fact]
    public async Task A_response_over_the_size_cap_is_an_upstream_error()
    {
        await using var mcp = await StartAsync(s => s.SetTool(new TestTool("huge", new string('d', 100_000),
            TestTool.Schema("""{"type":"object"}"""), (_, _) => ValueTask.FromResult(TestTool.Text("x")))));
        var tenant = TestEnvironment.NewTenant();

        var result = await RegisterAsync(tenant, mcp);

        Assert.Equal("upstream_error", result.Error?.Code);
        Assert.Contains("65536 byte limit", result.Error!.Detail);
        await AssertNothingStoredAsync(tenant);
    }

    [Fact]
    public async Task A_server_listing_more_tools_than_allowed_is_refused()
    {
        await using var host = await ServiceHost.StartAsync(new Dictionary<string, string?>(FastFailingHostFixture.Settings) { ["Integrations:Mcp:MaxTools"] = "3" });
        await using var mcp = await StartAsync(s => s.ToolsPageSize = 2);
        var tenant = TestEnvironment.NewTenant();

        var result = await host.SendAsync(new RegisterMcpServer.Command("many", mcp.Endpoint.ToString()), tenant);

        Assert.Equal("upstream_error", result.Error?.Code);
        Assert.Contains("more than 3 tools", result.Error!.Detail);
    }

    [Fact]
    public async Task A_server_that_requires_a_bearer_token_gets_the_resolved_secret_on_every_request()
    {
        await using var mcp = await StartAsync(s => s.RequiredBearerToken = "s3cret-token");
        var tenant = TestEnvironment.NewTenant();
        var reference = await StoreTokenAsync(tenant, "s3cret-token");

        var registered = await RegisterAsync(tenant, mcp, reference);

        Assert.True(registered.IsSuccess, registered.Error?.Detail);
        Assert.Equal(reference, registered.Value.Server.CredentialRef);
        Assert.Equal(1L, await OwnerSql.ScalarAsync<long>(Host.ConnectionString,
            "SELECT count(*) FROM credential_grants WHERE tenant_id = @tenant AND accessor_type = 'mcp_server' AND accessor_id = @id",
            new { tenant, id = registered.Value.Server.Id }));

        var discovered = await Host.SendAsync(new DiscoverMcpServer.Command(registered.Value.Server.Id), tenant);
        Assert.True(discovered.IsSuccess, discovered.Error?.Detail);
        var health = await Host.SendAsync(new CheckMcpServerHealth.Command(registered.Value.Server.Id), tenant);
        Assert.Equal("active", health.Value.Status);

        var posts = mcp.ReceivedRequests.Where(r => r.Method == "POST").ToList();
        Assert.True(posts.Count >= 4);
        Assert.All(posts, r => Assert.Equal("Bearer s3cret-token", r.Authorization));
        Assert.Equal(3L, await OwnerSql.ScalarAsync<long>(Host.ConnectionString,
            "SELECT count(*) FROM credential_access_log WHERE tenant_id = @tenant AND accessor_type = 'mcp_server' AND outcome = 'allowed'", new { tenant }));

        // The secret is only ever in the request to the server: not in responses, stored rows or audit details.
        var everything = System.Text.Json.JsonSerializer.Serialize(new object[] { registered.Value, discovered.Value, health.Value });
        Assert.DoesNotContain("s3cret-token", everything);
        Assert.Equal(0L, await OwnerSql.ScalarAsync<long>(Host.ConnectionString, """
            SELECT (SELECT count(*) FROM audit_events WHERE tenant_id = @tenant AND details::text LIKE '%s3cret-token%')
                 + (SELECT count(*) FROM mcp_servers WHERE tenant_id = @tenant AND row_to_json(mcp_servers)::text LIKE '%s3cret-token%')
            """, new { tenant }));
    }

    [Fact]
    public async Task Without_the_token_the_registration_fails_saying_the_server_refused()
    {
        await using var mcp = await StartAsync(s => s.RequiredBearerToken = "s3cret-token");
        var tenant = TestEnvironment.NewTenant();

        var result = await RegisterAsync(tenant, mcp);

        Assert.Equal("upstream_error", result.Error?.Code);
        Assert.Contains("refused", result.Error!.Detail);
        Assert.Contains("401", result.Error.Detail);
        await AssertNothingStoredAsync(tenant);
    }

    [Fact]
    public async Task A_wrong_token_fails_and_its_grant_is_taken_back()
    {
        await using var mcp = await StartAsync(s => s.RequiredBearerToken = "s3cret-token");
        var tenant = TestEnvironment.NewTenant();
        var reference = await StoreTokenAsync(tenant, "not-the-token");

        var result = await RegisterAsync(tenant, mcp, reference);

        Assert.Equal("upstream_error", result.Error?.Code);
        await AssertNothingStoredAsync(tenant);
    }

    [Fact]
    public async Task A_configured_header_carries_the_raw_secret_instead_of_authorization()
    {
        await using var mcp = await StartAsync(s =>
        {
            s.RequiredBearerToken = "api-key-123";
            s.AuthHeaderName = "X-Api-Key";
        });
        var tenant = TestEnvironment.NewTenant();
        var reference = await StoreTokenAsync(tenant, "api-key-123", "api_key");

        var registered = await RegisterAsync(tenant, mcp, reference, authHeader: "X-Api-Key");

        Assert.True(registered.IsSuccess, registered.Error?.Detail);
        Assert.Equal("X-Api-Key", registered.Value.Server.AuthHeader);
        Assert.All(mcp.ReceivedRequests.Where(r => r.Method == "POST"), r =>
        {
            Assert.Equal("api-key-123", r.Headers["X-Api-Key"]);
            Assert.Null(r.Authorization);
        });
    }

    [Fact]
    public async Task A_rotated_credential_gets_a_new_session_with_the_new_secret()
    {
        await using var mcp = await StartAsync(s => s.RequiredBearerToken = "first");
        var tenant = TestEnvironment.NewTenant();
        var reference = await StoreTokenAsync(tenant, "first");
        var server = (await RegisterAsync(tenant, mcp, reference)).Value.Server;
        Assert.True((await Host.SendAsync(new DiscoverMcpServer.Command(server.Id), tenant)).IsSuccess);

        var credentialId = Guid.Parse(reference[(reference.LastIndexOf('/') + 1)..]);
        Assert.True((await Host.SendAsync(new RotateCredential.Command(credentialId, new(Secret: "second")), tenant)).IsSuccess);
        mcp.RequiredBearerToken = "second";
        mcp.ClearReceived();

        var discovered = await Host.SendAsync(new DiscoverMcpServer.Command(server.Id), tenant);

        Assert.True(discovered.IsSuccess, discovered.Error?.Detail);
        Assert.All(mcp.ReceivedRequests.Where(r => r.Method == "POST"), r => Assert.Equal("Bearer second", r.Authorization));
    }

    [Fact]
    public async Task A_transient_503_is_retried_and_the_registration_succeeds()
    {
        await using var mcp = await StartAsync(s => s.FailNext(1, 503));
        var tenant = TestEnvironment.NewTenant();

        var result = await RegisterAsync(tenant, mcp);

        Assert.True(result.IsSuccess, result.Error?.Detail);
        Assert.Equal(2, mcp.Count("server/discover")); // the refused connect, then the retry
    }

    [Fact]
    public async Task An_encrypted_reference_resolves_without_a_grant_and_its_secret_is_sent()
    {
        await using var mcp = await StartAsync(s => s.RequiredBearerToken = "sealed-token");
        var tenant = TestEnvironment.NewTenant();
        var encrypted = await Host.SendAsync(new EncryptCredential.Command("sealed-token"), tenant);
        Assert.True(encrypted.IsSuccess, encrypted.Error?.Detail);

        var registered = await RegisterAsync(tenant, mcp, encrypted.Value.Reference);

        Assert.True(registered.IsSuccess, registered.Error?.Detail);
        Assert.All(mcp.ReceivedRequests.Where(r => r.Method == "POST"), r => Assert.Equal("Bearer sealed-token", r.Authorization));
    }

    [Fact]
    public async Task A_vault_reference_to_no_stored_credential_is_refused_before_any_connection()
    {
        await using var mcp = await StartAsync();
        var tenant = TestEnvironment.NewTenant();

        var result = await RegisterAsync(tenant, mcp, $"cus-vault://{tenant}/{Guid.NewGuid()}");

        Assert.Equal("credential_not_found", result.Error?.Code);
        Assert.Empty(mcp.ReceivedRequests);
        await AssertNothingStoredAsync(tenant);
    }

    [Fact]
    public async Task Repeated_failures_open_the_servers_circuit_and_later_calls_fail_fast_without_contacting_it()
    {
        await using var host = await ServiceHost.StartAsync(new Dictionary<string, string?>(FastFailingHostFixture.Settings)
        {
            ["Integrations:Mcp:RetryAttempts"] = "0",
            ["Integrations:Mcp:BreakerMinimumThroughput"] = "2",
            ["Integrations:Mcp:BreakerFailureRatio"] = "0.5",
        });
        await using var mcp = await StartAsync();
        var tenant = TestEnvironment.NewTenant();
        var server = (await host.SendAsync(new RegisterMcpServer.Command("flaky", mcp.Endpoint.ToString()), tenant)).Value.Server;
        mcp.ForcedStatusCode = 503;

        Assert.Equal("upstream_error", (await host.SendAsync(new DiscoverMcpServer.Command(server.Id), tenant)).Error?.Code);
        Assert.Equal("upstream_error", (await host.SendAsync(new DiscoverMcpServer.Command(server.Id), tenant)).Error?.Code);
        mcp.ClearReceived();

        var paused = await host.SendAsync(new DiscoverMcpServer.Command(server.Id), tenant);
        var health = await host.SendAsync(new CheckMcpServerHealth.Command(server.Id), tenant);

        Assert.Equal("upstream_unreachable", paused.Error?.Code);
        Assert.Contains("paused", paused.Error!.Detail);
        Assert.Equal("unreachable", health.Value.Status);
        Assert.Empty(mcp.ReceivedRequests);
    }
}
