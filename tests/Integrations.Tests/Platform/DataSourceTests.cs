using Dapper;
using Integrations.Infrastructure.Database;
using Integrations.Tests.Support;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Integrations.Tests.Platform;

public sealed class DataSourceTests
{
    [Fact]
    public void Statements_are_prepared_automatically_by_default()
    {
        using var dataSource = IntegrationsServiceCollection.CreateDataSource("Host=127.0.0.1;Username=u;Database=d");

        Assert.Equal(IntegrationsServiceCollection.DefaultMaxAutoPrepare, new NpgsqlConnectionStringBuilder(dataSource.ConnectionString).MaxAutoPrepare);
    }

    [Theory]
    [InlineData("Host=127.0.0.1;Username=u;Database=d;Max Auto Prepare=0", 0)]
    [InlineData("Host=127.0.0.1;Username=u;Database=d;MaxAutoPrepare=0", 0)]
    [InlineData("Host=127.0.0.1;Username=u;Database=d;Max Auto Prepare=8", 8)]
    public void The_connection_string_decides_when_it_sets_max_auto_prepare(string connectionString, int expected)
    {
        using var dataSource = IntegrationsServiceCollection.CreateDataSource(connectionString);

        Assert.Equal(expected, new NpgsqlConnectionStringBuilder(dataSource.ConnectionString).MaxAutoPrepare);
    }

    [Theory]
    [InlineData("Host=127.0.0.1;Username=u;Database=d", false, true)]
    [InlineData("Host=127.0.0.1;Username=u;Database=d", true, false)]
    [InlineData("Host=127.0.0.1;Username=u;Database=d;No Reset On Close=false", false, false)]
    public void Only_the_requests_pool_skips_the_reset_on_close_unless_the_connection_string_says(string connectionString, bool resetOnClose, bool expected)
    {
        using var dataSource = IntegrationsServiceCollection.CreateDataSource(connectionString, resetOnClose: resetOnClose);

        Assert.Equal(expected, new NpgsqlConnectionStringBuilder(dataSource.ConnectionString).NoResetOnClose);
    }

    [Fact]
    public async Task A_requests_connection_goes_back_to_the_pool_without_its_role_tenant_or_listener()
    {
        // Two connections in the requests' pool: whatever the requests below leave behind is on one of them.
        var service = new NpgsqlConnectionStringBuilder(TestEnvironment.ServiceConnectionString(await TestEnvironment.ConnectionStringAsync())) { MaxPoolSize = 2 };
        await using var host = await ServiceHost.StartAsync(new Dictionary<string, string?> { ["ConnectionStrings:Integrations"] = service.ConnectionString });
        await host.WaitUntilListeningAsync();
        var owner = host.Services.GetRequiredService<OwnerDatabase>().DataSource;
        Assert.True(new NpgsqlConnectionStringBuilder(host.DataSource.ConnectionString).NoResetOnClose);
        Assert.NotSame(host.DataSource, owner);
        Assert.False(new NpgsqlConnectionStringBuilder(owner.ConnectionString).NoResetOnClose);

        // Requests that commit, that fail and roll back, and that only read, several at a time so the pool holds several connections.
        var tenant = TestEnvironment.NewTenant();
        await Task.WhenAll(Enumerable.Range(0, 8).Select(async i =>
        {
            Assert.True((await host.SendAsync(new Features.Integrations.CreateIntegration.Command($"reset-{i}", "openai"), tenant)).IsSuccess);
            Assert.False((await host.SendAsync(new Features.Integrations.CreateIntegration.Command($"reset-{i}", "openai"), tenant)).IsSuccess);
            Assert.True((await host.SendAsync(new Features.Integrations.QueryIntegrations.Query(), tenant)).IsSuccess);
        }));

        // Both connections of the requests' pool, taken at once: each is its login role again, with no tenant and no
        // channel it listens on (the change listener has a connection of its own).
        var connections = new List<NpgsqlConnection>();
        try
        {
            for (var i = 0; i < service.MaxPoolSize; i++) connections.Add(await host.DataSource.OpenConnectionAsync());
            foreach (var connection in connections)
            {
                var state = await connection.QuerySingleAsync<(string User, string Role, string Tenant, long Listening)>(
                    "SELECT current_user, current_setting('role'), coalesce(current_setting('app.tenant_id', true), ''), (SELECT count(*) FROM pg_listening_channels())");
                Assert.Equal((TestEnvironment.ServiceRoleName, "none", "", 0L), state);
            }
        }
        finally
        {
            foreach (var connection in connections) await connection.DisposeAsync();
        }
    }

    [Fact]
    public async Task Requests_answer_the_same_once_their_statements_are_prepared()
    {
        await using var host = await ServiceHost.StartAsync();
        var tenant = TestEnvironment.NewTenant();
        var created = await host.SendAsync(new Features.Integrations.CreateIntegration.Command("prepared", "openai"), tenant);

        // Auto-prepare starts after a statement's fifth use on a connection; the pool may spread the uses
        // over connections, so run well past that.
        for (var i = 0; i < 40; i++)
        {
            var page = await host.SendAsync(new Features.Integrations.QueryIntegrations.Query(), tenant);
            Assert.Equal(created.Value.Id, Assert.Single(page.Value.Items).Id);
            var other = await host.SendAsync(new Features.Integrations.QueryIntegrations.Query(), TestEnvironment.NewTenant());
            Assert.Empty(other.Value.Items);
        }
    }

    private sealed record Stamped(DateTimeOffset At, DateTimeOffset? Maybe);

    [Fact]
    public async Task Timestamps_read_into_date_time_offsets_as_utc()
    {
        DapperSettings.Apply();
        await using var dataSource = NpgsqlDataSource.Create(await TestEnvironment.ConnectionStringAsync());
        await using var connection = await dataSource.OpenConnectionAsync();
        var written = new DateTimeOffset(2026, 3, 1, 10, 30, 45, TimeSpan.Zero).AddTicks(1230);

        // In a session whose time zone is not UTC: the instant, not the wall clock, comes back.
        await connection.ExecuteAsync("SET TIME ZONE 'Asia/Kolkata'");
        var row = await connection.QuerySingleAsync<Stamped>("SELECT @Written AS at, NULL::timestamptz AS maybe", new { Written = written });
        var scalar = await connection.QuerySingleAsync<DateTimeOffset>("SELECT @Written::timestamptz", new { Written = written });
        var text = await connection.QuerySingleAsync<string>("SELECT to_char(@Written AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')", new { Written = written });

        Assert.Equal(TimeSpan.Zero, row.At.Offset);
        Assert.Equal(written.UtcTicks, row.At.UtcTicks);
        Assert.Null(row.Maybe);
        Assert.Equal(written, scalar);
        Assert.Equal("2026-03-01 10:30:45.000123", text);
    }
}
