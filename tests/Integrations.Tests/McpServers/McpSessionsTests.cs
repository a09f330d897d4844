using System.Text.Json;
using Integrations.Infrastructure.Mcp;
using Integrations.Infrastructure.Network;
using Integrations.Tests.Support;
using Microsoft.Extensions.Logging.Abstractions;
using ModelContextProtocol.Protocol;

namespace Integrations.Tests.McpServers;

/// <summary>The session pool on its own, against C# MCP servers: reuse, re-initialization, eviction, tool calls.</summary>
public sealed class McpSessionsTests
{
    private static McpSessions Pool(Action<McpOptions>? configure = null, TimeProvider? time = null)
    {
        var options = new McpOptions
        {
            RequestTimeout = TimeSpan.FromSeconds(5),
            RetryAttempts = 0,
            MaxResponseBytes = 64 * 1024,
        };
        configure?.Invoke(options);
        return new McpSessions(options, new SsrfGuard(new EgressAllowList(["127.0.0.1"])), NullLogger<McpSessions>.Instance, time);
    }

    private static async Task<TestMcpServer> StartAsync(Action<TestMcpServer>? configure = null)
    {
        var server = new TestMcpServer();
        configure?.Invoke(server);
        await server.StartAsync();
        return server;
    }

    private static McpEndpoint Endpoint(TestMcpServer server, Guid? id = null, McpServerAuth? auth = null) =>
        new("tenant-a", id ?? Guid.NewGuid(), server.Endpoint, auth);

    private static int Connects(TestMcpServer server) => server.Count("server/discover") + server.Count("initialize");

    private static Dictionary<string, JsonElement> Args(string json) =>
        JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(json)!;

    [Fact]
    public async Task One_session_per_server_is_reused_also_by_concurrent_callers()
    {
        await using var pool = Pool();
        await using var mcp = await StartAsync();
        var endpoint = Endpoint(mcp);

        var results = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => pool.DescribeAsync(endpoint, CancellationToken.None)));
        await pool.DescribeAsync(endpoint, CancellationToken.None);

        Assert.All(results, r => Assert.True(r.IsSuccess, r.Error?.Detail));
        Assert.Equal(1, Connects(mcp));
        Assert.Equal(9, mcp.Count("tools/list"));
        Assert.Equal(1, pool.Count);
    }

    [Fact]
    public async Task A_session_the_server_ended_is_initialized_again_and_the_request_succeeds()
    {
        await using var pool = Pool(o => o.ProtocolVersion = "2025-11-25");
        await using var mcp = await StartAsync(s => s.IssueSessions = true);
        var endpoint = Endpoint(mcp);
        Assert.True((await pool.DescribeAsync(endpoint, CancellationToken.None)).IsSuccess);

        mcp.ExpireSessions();
        var afterExpiry = await pool.DescribeAsync(endpoint, CancellationToken.None);
        var call = await pool.CallToolAsync(endpoint, "echo", Args("""{"message":"hi"}"""), null, CancellationToken.None);

        Assert.True(afterExpiry.IsSuccess, afterExpiry.Error?.Detail);
        Assert.True(call.IsSuccess, call.Error?.Detail);
        Assert.Equal(2, mcp.Count("initialize"));
    }

    [Fact]
    public async Task A_tool_call_on_an_expired_session_is_sent_again_on_a_new_one_and_runs_once()
    {
        await using var pool = Pool(o => o.ProtocolVersion = "2025-11-25");
        await using var mcp = await StartAsync(s => s.IssueSessions = true);
        var endpoint = Endpoint(mcp);
        Assert.True((await pool.DescribeAsync(endpoint, CancellationToken.None)).IsSuccess);
        mcp.ExpireSessions();

        var call = await pool.CallToolAsync(endpoint, "echo", Args("""{"message":"once"}"""), null, CancellationToken.None);

        Assert.Equal("Echo: once", Assert.IsType<TextContentBlock>(Assert.Single(call.Value.Content)).Text);
        Assert.Equal(1, mcp.ToolCalls);
    }

    [Fact]
    public async Task A_changed_credential_gets_a_new_session_carrying_the_new_secret()
    {
        await using var pool = Pool();
        await using var mcp = await StartAsync();
        var id = Guid.NewGuid();

        await pool.DescribeAsync(Endpoint(mcp, id, McpServerAuth.Token("Authorization", "one")), CancellationToken.None);
        await pool.DescribeAsync(Endpoint(mcp, id, McpServerAuth.Token("Authorization", "one")), CancellationToken.None);
        await pool.DescribeAsync(Endpoint(mcp, id, McpServerAuth.Token("Authorization", "two")), CancellationToken.None);

        Assert.Equal(2, Connects(mcp));
        Assert.Equal(["Bearer one", "Bearer one", "Bearer one", "Bearer two", "Bearer two"],
            mcp.ReceivedRequests.Where(r => r.Method == "POST").Select(r => r.Authorization));
        Assert.Equal(1, pool.Count);
    }

    [Fact]
    public async Task The_pool_holds_at_most_the_configured_sessions_and_drops_the_least_recently_used()
    {
        await using var pool = Pool(o => o.MaxSessions = 2);
        await using var mcp = await StartAsync();
        var (first, second, third) = (Guid.NewGuid(), Guid.NewGuid(), Guid.NewGuid());

        await pool.DescribeAsync(Endpoint(mcp, first), CancellationToken.None);
        await pool.DescribeAsync(Endpoint(mcp, second), CancellationToken.None);
        await pool.DescribeAsync(Endpoint(mcp, first), CancellationToken.None);
        await pool.DescribeAsync(Endpoint(mcp, third), CancellationToken.None);

        Assert.Equal(2, pool.Count);
        Assert.True(pool.HasSession("tenant-a", first));
        Assert.False(pool.HasSession("tenant-a", second));
        Assert.True(pool.HasSession("tenant-a", third));
    }

    /// <summary>A clock the test moves; its timers never fire, so eviction happens only when the test asks.</summary>
    private sealed class ManualClock : TimeProvider
    {
        private long _ticks;

        public override long TimestampFrequency => TimeSpan.TicksPerSecond;

        public override long GetTimestamp() => Interlocked.Read(ref _ticks);

        public void Advance(TimeSpan by) => Interlocked.Add(ref _ticks, by.Ticks);

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period) =>
            base.CreateTimer(callback, state, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    [Fact]
    public async Task Idle_sessions_are_closed_and_close_drops_a_servers_session()
    {
        var clock = new ManualClock();
        await using var pool = Pool(o => o.IdleTimeout = TimeSpan.FromMinutes(1), clock);
        await using var mcp = await StartAsync();
        var (idle, closed, recent) = (Guid.NewGuid(), Guid.NewGuid(), Guid.NewGuid());
        await pool.DescribeAsync(Endpoint(mcp, idle), CancellationToken.None);
        await pool.DescribeAsync(Endpoint(mcp, closed), CancellationToken.None);

        pool.Close("tenant-a", closed);
        Assert.False(pool.HasSession("tenant-a", closed));
        Assert.True(pool.HasSession("tenant-a", idle));

        clock.Advance(TimeSpan.FromMinutes(2));
        await pool.DescribeAsync(Endpoint(mcp, recent), CancellationToken.None);
        pool.EvictIdle();

        Assert.False(pool.HasSession("tenant-a", idle));
        Assert.True(pool.HasSession("tenant-a", recent));
        Assert.Equal(1, pool.Count);
    }

    [Fact]
    public async Task A_tool_call_beyond_its_timeout_is_upstream_timeout_the_server_sees_the_cancellation_and_the_session_stays_usable()
    {
        await using var pool = Pool();
        await using var mcp = await StartAsync();
        var endpoint = Endpoint(mcp);

        var slow = await pool.CallToolAsync(endpoint, "slow", Args("""{"ms":10000}"""), TimeSpan.FromMilliseconds(300), CancellationToken.None);
        var echo = await pool.CallToolAsync(endpoint, "echo", Args("""{"message":"still here"}"""), null, CancellationToken.None);

        Assert.Equal("upstream_timeout", slow.Error?.Code);
        Assert.True(echo.IsSuccess, echo.Error?.Detail);
        Assert.Equal(1, Connects(mcp));
        for (var i = 0; i < 50 && mcp.SlowCancellations == 0; i++) await Task.Delay(20);
        Assert.Equal(1, mcp.SlowCancellations);
    }

    [Fact]
    public async Task A_tool_call_whose_connection_dies_is_an_upstream_error_and_is_not_retried()
    {
        await using var pool = Pool(o => o.RetryAttempts = 3);
        await using var mcp = await StartAsync();
        var endpoint = Endpoint(mcp);

        var crashed = await pool.CallToolAsync(endpoint, "crash", Args("""{"ms":50}"""), null, CancellationToken.None);
        var after = await pool.CallToolAsync(endpoint, "echo", Args("""{"message":"x"}"""), null, CancellationToken.None);

        Assert.Equal("upstream_error", crashed.Error?.Code);
        Assert.Equal(2, mcp.Count("tools/call"));
        Assert.True(after.IsSuccess, after.Error?.Detail);
    }

    [Fact]
    public async Task Tool_errors_are_results_and_protocol_errors_and_oversized_results_are_upstream_errors()
    {
        await using var pool = Pool();
        await using var mcp = await StartAsync();
        var endpoint = Endpoint(mcp);

        var toolError = await pool.CallToolAsync(endpoint, "tool-error", null, null, CancellationToken.None);
        var protocolError = await pool.CallToolAsync(endpoint, "protocol-error", null, null, CancellationToken.None);
        var big = await pool.CallToolAsync(endpoint, "big", Args("""{"size":200000}"""), null, CancellationToken.None);
        var small = await pool.CallToolAsync(endpoint, "big", Args("""{"size":1000}"""), null, CancellationToken.None);

        Assert.True(toolError.Value.IsError);
        Assert.Equal("upstream_error", protocolError.Error?.Code);
        Assert.Contains("-32602", protocolError.Error!.Detail);
        Assert.Equal("upstream_error", big.Error?.Code);
        Assert.Contains("65536 byte limit", big.Error!.Detail);
        Assert.True(small.IsSuccess, "the session survives an oversized response");
    }

    [Fact]
    public async Task The_caller_cancelling_is_not_turned_into_an_upstream_error()
    {
        await using var pool = Pool();
        await using var mcp = await StartAsync();
        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
            pool.CallToolAsync(Endpoint(mcp), "slow", Args("""{"ms":10000}"""), null, cancel.Token));
    }

    [Fact]
    public void The_auth_header_never_prints_its_secret()
    {
        var auth = McpServerAuth.Token("Authorization", "very-secret");

        Assert.Equal("Bearer very-secret", auth.HeaderValue);
        Assert.DoesNotContain("very-secret", auth.ToString());
        Assert.DoesNotContain("very-secret", new McpEndpoint("t", Guid.NewGuid(), new Uri("https://x.example/mcp"), auth).ToString());
        Assert.Equal("raw-key", McpServerAuth.Token("X-Api-Key", "raw-key").HeaderValue);
    }
}
