using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Npgsql;

namespace Integrations.Tests.Support;

/// <summary>
/// A throwaway PostgreSQL cluster of a test class's own, for server settings the shared test cluster does not have
/// (host authentication, TLS): initialised with scram-sha-256 host authentication for its superuser <c>admin</c> (as
/// the postgres OS user when running as root), configured by the caller between initdb and start, and stopped and
/// deleted when disposed.
/// </summary>
public sealed class PrivateCluster : IAsyncDisposable
{
    private const string PgBin = "/usr/lib/postgresql/15/bin";

    private PrivateCluster(string directory) => Directory = directory;

    public string Directory { get; }

    public string DataDirectory => Path.Combine(Directory, "data");

    /// <summary>Superuser connection string (with its password).</summary>
    public string AdminConnectionString { get; private set; } = null!;

    /// <param name="configure">Runs after initdb, before the start: write files into <see cref="DataDirectory"/> (<see cref="WriteAsync"/>).</param>
    /// <param name="options">Server options for the start, e.g. <c>-c ssl=on</c>.</param>
    public static async Task<PrivateCluster> StartAsync(Func<PrivateCluster, Task>? configure = null, string options = "")
    {
        var cluster = new PrivateCluster(Path.Combine(Path.GetTempPath(), $"integrations-pg-{Guid.NewGuid():N}"));
        System.IO.Directory.CreateDirectory(cluster.Directory);
        try
        {
            await cluster.InitializeAsync(configure, options);
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    private async Task InitializeAsync(Func<PrivateCluster, Task>? configure, string options)
    {
        var password = TargetDatabase.NewPassword();
        var passwordFile = Path.Combine(Directory, "pw");
        await File.WriteAllTextAsync(passwordFile, password);
        if (IsRoot) await RunAsync("chown", "-R", "postgres:", Directory);

        await RunAsOwnerAsync($"{PgBin}/initdb", "-D", DataDirectory, "-U", "admin", $"--pwfile={passwordFile}",
            "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "-E", "UTF8", "--locale=C");
        if (configure is not null) await configure(this);
        var port = FreePort();
        await RunAsOwnerAsync($"{PgBin}/pg_ctl", "start", "-D", DataDirectory, "-w", "-t", "60", "-l", Path.Combine(Directory, "log"),
            "-o", $"-p {port} -k {Directory} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=30 {options}");
        AdminConnectionString = new NpgsqlConnectionStringBuilder
        {
            Host = "127.0.0.1",
            Port = port,
            Username = "admin",
            Password = password,
            Database = "postgres",
        }.ConnectionString;
    }

    /// <summary>Writes a file into the data directory, owned by the server's OS user and readable by it alone (as a server key must be).</summary>
    public async Task WriteAsync(string name, string content)
    {
        var path = Path.Combine(DataDirectory, name);
        await File.WriteAllTextAsync(path, content);
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        if (IsRoot) await RunAsync("chown", "postgres:", path);
    }

    /// <summary>The server's log so far (assertions about what it refused and why).</summary>
    public string Log => File.Exists(Path.Combine(Directory, "log")) ? File.ReadAllText(Path.Combine(Directory, "log")) : string.Empty;

    public async ValueTask DisposeAsync()
    {
        NpgsqlConnection.ClearAllPools();
        try
        {
            if (File.Exists(Path.Combine(DataDirectory, "postmaster.pid")))
            {
                await RunAsOwnerAsync($"{PgBin}/pg_ctl", "stop", "-D", DataDirectory, "-m", "immediate", "-w");
            }
        }
        finally
        {
            System.IO.Directory.Delete(Directory, recursive: true);
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
