using Dapper;
using Integrations.Infrastructure.Database;
using Integrations.Tests.Support;
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
