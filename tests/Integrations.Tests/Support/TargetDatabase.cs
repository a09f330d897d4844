using System.Security.Cryptography;
using Integrations.Infrastructure.Datasources;
using Npgsql;

namespace Integrations.Tests.Support;

/// <summary>
/// A second real database for the SQL gateway to query: seeded tables (customers: 120 rows, t: 3 rows), a
/// sequence, and a least-privilege LOGIN role with a password that may only read those tables. Roles are
/// cluster-wide, so each has a unique name; both go when the fixture is disposed.
/// </summary>
public sealed class TargetDatabase : IAsyncDisposable
{
    public const int CustomerCount = 120;

    private readonly string _adminConnectionString;

    private TargetDatabase(string adminConnectionString, string database, string role, string password)
    {
        _adminConnectionString = adminConnectionString;
        Database = database;
        Role = role;
        Password = password;
        var builder = new NpgsqlConnectionStringBuilder(adminConnectionString);
        Host = builder.Host!;
        Port = builder.Port;
    }

    public string Host { get; }
    public int Port { get; }
    public string Database { get; }
    public string Role { get; }
    public string Password { get; }

    /// <summary>The seeded database as its superuser (assertions and set-up only).</summary>
    public string AdminConnectionString => new NpgsqlConnectionStringBuilder(_adminConnectionString) { Database = Database }.ConnectionString;

    public static async Task<TargetDatabase> CreateAsync(string? adminConnectionString = null)
    {
        adminConnectionString ??= TestEnvironment.AdminConnectionString;
        var role = $"ds_reader_{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6))}";
        var password = NewPassword();
        var database = $"ds_{Guid.NewGuid():N}"[..30];
        await using (var admin = new NpgsqlConnection(adminConnectionString))
        {
            await admin.OpenAsync();
            await Execute(admin, $"CREATE DATABASE \"{database}\"");
            await Execute(admin, $"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}' NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT");
        }
        var target = new TargetDatabase(adminConnectionString, database, role, password);
        await using (var seed = new NpgsqlConnection(target.AdminConnectionString))
        {
            await seed.OpenAsync();
            await Execute(seed, $"""
                CREATE TABLE customers (id integer PRIMARY KEY, name text NOT NULL, tier text NOT NULL, balance numeric(12,2) NOT NULL,
                                        active boolean NOT NULL, signed_up date NOT NULL, tags text[] NOT NULL DEFAULT ARRAY[]::text[], profile jsonb);
                INSERT INTO customers
                SELECT i, 'customer ' || i, (ARRAY['free', 'pro', 'enterprise'])[1 + i % 3], i * 10.5, i % 2 = 0,
                       date '2024-01-01' + i, ARRAY['t' || (i % 5)], jsonb_build_object('n', i)
                FROM generate_series(1, {CustomerCount}) AS i;
                CREATE TABLE t (id integer PRIMARY KEY, note text NOT NULL);
                INSERT INTO t VALUES (1, 'one'), (2, 'two'), (3, 'three');
                CREATE SEQUENCE s;
                CREATE TABLE secrets (id integer, value text);
                INSERT INTO secrets VALUES (1, 'not for the gateway');
                GRANT USAGE ON SCHEMA public TO "{role}";
                GRANT SELECT ON customers, t TO "{role}";
                GRANT USAGE, SELECT ON SEQUENCE s TO "{role}";
                """);
        }
        return target;
    }

    public DatasourceTarget TargetFor(Guid id, string tlsMode = "disable") => new(id, Host, Port, Database, Role, tlsMode);

    public async Task<long> CountAsync(string table) =>
        await OwnerSql.ScalarAsync<long>(AdminConnectionString, $"SELECT count(*) FROM {table}");

    /// <summary>The gateway's sessions on this database for one datasource: (state, query).</summary>
    public Task<List<(string State, string Query)>> GatewaySessionsAsync(Guid datasourceId) =>
        OwnerSql.QueryAsync<(string State, string Query)>(AdminConnectionString,
            "SELECT state, query FROM pg_stat_activity WHERE application_name = @name",
            new { name = DatasourceConnections.ApplicationName(datasourceId) });

    public static string NewPassword() => $"pw{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(12))}";

    private static async Task Execute(NpgsqlConnection connection, string sql)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    public async ValueTask DisposeAsync()
    {
        NpgsqlConnection.ClearAllPools();
        await using var admin = new NpgsqlConnection(_adminConnectionString);
        await admin.OpenAsync();
        await Execute(admin, $"DROP DATABASE IF EXISTS \"{Database}\" WITH (FORCE)");
        await Execute(admin, $"DROP ROLE IF EXISTS \"{Role}\"");
    }
}
