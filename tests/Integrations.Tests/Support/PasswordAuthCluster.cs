using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Npgsql;

namespace Integrations.Tests.Support;

/// <summary>
/// A PostgreSQL cluster that really checks passwords on TCP logins, for the wrong-password tests. The test
/// cluster is used when it does (eng/pg.sh configures scram-sha-256 for host connections); a cluster that trusts
/// every login cannot refuse a wrong password, so then a private throwaway cluster is initialised with
/// scram-sha-256 host authentication (as the postgres OS user when running as root) and removed afterwards.
/// </summary>
public sealed class PasswordAuthCluster : IAsyncLifetime
{
    private const string PgBin = "/usr/lib/postgresql/15/bin";

    private string? _directory;

    /// <summary>Superuser connection string (with its password) to a cluster that enforces passwords.</summary>
    public string AdminConnectionString { get; private set; } = null!;

    public bool IsPrivate => _directory is not null;

    public async Task InitializeAsync()
    {
        if (await EnforcesPasswordsAsync(TestEnvironment.AdminConnectionString))
        {
            AdminConnectionString = TestEnvironment.AdminConnectionString;
            return;
        }
        AdminConnectionString = await StartPrivateClusterAsync();
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

    private async Task<string> StartPrivateClusterAsync()
    {
        _directory = Path.Combine(Path.GetTempPath(), $"integrations-pwauth-{Guid.NewGuid():N}");
        Directory.CreateDirectory(_directory);
        var password = TargetDatabase.NewPassword();
        var passwordFile = Path.Combine(_directory, "pw");
        await File.WriteAllTextAsync(passwordFile, password);
        if (IsRoot) await RunAsync("chown", "-R", "postgres:", _directory);

        var data = Path.Combine(_directory, "data");
        await RunAsOwnerAsync($"{PgBin}/initdb", "-D", data, "-U", "admin", $"--pwfile={passwordFile}",
            "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "-E", "UTF8", "--locale=C");
        var port = FreePort();
        await RunAsOwnerAsync($"{PgBin}/pg_ctl", "start", "-D", data, "-w", "-t", "60", "-l", Path.Combine(_directory, "log"),
            "-o", $"-p {port} -k {_directory} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=30");
        return new NpgsqlConnectionStringBuilder
        {
            Host = "127.0.0.1",
            Port = port,
            Username = "admin",
            Password = password,
            Database = "postgres",
        }.ConnectionString;
    }

    public async Task DisposeAsync()
    {
        if (_directory is null) return;
        NpgsqlConnection.ClearAllPools();
        try
        {
            await RunAsOwnerAsync($"{PgBin}/pg_ctl", "stop", "-D", Path.Combine(_directory, "data"), "-m", "immediate", "-w");
        }
        finally
        {
            Directory.Delete(_directory, recursive: true);
        }
    }

    private static bool IsRoot => Environment.UserName == "root";

    private static Task RunAsOwnerAsync(string program, params string[] args) =>
        IsRoot ? RunAsync("runuser", ["-u", "postgres", "--", program, .. args]) : RunAsync(program, args);

    private static async Task RunAsync(string program, params string[] args)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = "/" };
        foreach (var arg in args) start.ArgumentList.Add(arg);
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {program}.");
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{program} {string.Join(' ', args)} exited with {process.ExitCode}: {await error}{await output}");
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
