using Npgsql;

namespace Integrations.Tests.Support;

/// <summary>
/// A PostgreSQL cluster that really checks passwords on TCP logins, for the wrong-password tests. The test
/// cluster is used when it does (eng/pg.sh configures scram-sha-256 for host connections); a cluster that trusts
/// every login cannot refuse a wrong password, so then a <see cref="PrivateCluster"/> (scram-sha-256 host authentication)
/// is started and removed afterwards.
/// </summary>
public sealed class PasswordAuthCluster : IAsyncLifetime
{
    private PrivateCluster? _cluster;

    /// <summary>Superuser connection string (with its password) to a cluster that enforces passwords.</summary>
    public string AdminConnectionString { get; private set; } = null!;

    public bool IsPrivate => _cluster is not null;

    public async Task InitializeAsync()
    {
        if (await EnforcesPasswordsAsync(TestEnvironment.AdminConnectionString))
        {
            AdminConnectionString = TestEnvironment.AdminConnectionString;
            return;
        }
        _cluster = await PrivateCluster.StartAsync();
        AdminConnectionString = _cluster.AdminConnectionString;
    }

    /// <summary>Creates a throwaway login role and tries it with a wrong password.</summary>
    public static async Task<bool> EnforcesPasswordsAsync(string adminConnectionString)
    {
        var role = $"pw_probe_{Guid.NewGuid():N}"[..24];
        await using var admin = new NpgsqlConnection(adminConnectionString);
        await admin.OpenAsync();
        await using (var create = new NpgsqlCommand($"CREATE ROLE \"{role}\" LOGIN PASSWORD 'right-{Guid.NewGuid():N}'", admin))
        {
            await create.ExecuteNonQueryAsync();
        }
        try
        {
            var attempt = new NpgsqlConnectionStringBuilder(adminConnectionString)
            {
                Username = role,
                Password = "wrong",
                Database = "postgres",
                Pooling = false,
            };
            await using var connection = new NpgsqlConnection(attempt.ConnectionString);
            await connection.OpenAsync();
            return false;
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.InvalidPassword)
        {
            return true;
        }
        finally
        {
            await using var drop = new NpgsqlCommand($"DROP ROLE \"{role}\"", admin);
            await drop.ExecuteNonQueryAsync();
        }
    }

    public async Task DisposeAsync()
    {
        if (_cluster is not null) await _cluster.DisposeAsync();
    }
}
