using Integrations.Infrastructure.Database;
using Integrations.Tests.Support;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Integrations.Tests.Platform;

public sealed class MigrationTests
{
    [Fact]
    public async Task Running_migrations_twice_is_a_no_op()
    {
        var connectionString = await TestEnvironment.CreateDatabaseAsync("mig");
        await using var dataSource = NpgsqlDataSource.Create(connectionString);
        var runner = new MigrationRunner(dataSource, NullLogger<MigrationRunner>.Instance);

        Assert.Equal(MigrationRunner.Embedded.Count, await runner.RunAsync(CancellationToken.None));
        Assert.Equal(0, await runner.RunAsync(CancellationToken.None));
        Assert.Equal((long)MigrationRunner.Embedded.Count, await OwnerSql.ScalarAsync<long>(connectionString, "SELECT count(*) FROM schema_migrations"));
    }

    [Fact]
    public async Task Replicas_starting_together_apply_each_migration_once()
    {
        var connectionString = await TestEnvironment.CreateDatabaseAsync("mig");
        await using var dataSource = NpgsqlDataSource.Create(connectionString);

        var applied = await Task.WhenAll(Enumerable.Range(0, 3).Select(_ =>
            new MigrationRunner(dataSource, NullLogger<MigrationRunner>.Instance).RunAsync(CancellationToken.None)));

        Assert.Equal(MigrationRunner.Embedded.Count, applied.Sum());
    }

    [Fact]
    public async Task A_changed_applied_migration_stops_start_up_naming_the_file()
    {
        var connectionString = await TestEnvironment.CreateMigratedDatabaseAsync("mig");
        var first = MigrationRunner.Embedded[0];
        await OwnerSql.ExecuteAsync(connectionString, "UPDATE schema_migrations SET checksum = 'edited' WHERE version = @Version", new { first.Version });
        await using var dataSource = NpgsqlDataSource.Create(connectionString);

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() =>
            new MigrationRunner(dataSource, NullLogger<MigrationRunner>.Instance).RunAsync(CancellationToken.None));

        Assert.Contains($"{first.Version}_{first.Name}.sql", error.Message);
    }

    [Fact]
    public void Migrations_are_numbered_uniquely_and_in_order()
    {
        var versions = MigrationRunner.Embedded.Select(m => m.Version).ToList();
        Assert.Equal(versions.Order(StringComparer.Ordinal), versions);
        Assert.All(versions, v => Assert.Matches("^[0-9]{4}$", v));
    }
}
