using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using Integrations.Common;
using Integrations.Infrastructure.Network;
using Npgsql;

namespace Integrations.Infrastructure.Datasources;

/// <summary>Where a datasource lives; the password travels separately, as resolved for this one connection.</summary>
public sealed record DatasourceTarget(Guid Id, string Host, int Port, string Database, string Username, string TlsMode);

/// <summary>
/// One small connection pool per datasource. Every open passes the <see cref="SsrfGuard"/>: the host is resolved
/// and checked each time and Npgsql connects to the checked address (the host name stays the TLS target), so a
/// DNS answer that changes cannot reach an address the guard refused. A changed address, password or setting
/// gets a fresh pool; the old one is disposed.
/// </summary>
public sealed class DatasourceConnections(SsrfGuard guard) : IAsyncDisposable
{
    public const int MaxPoolSize = 10;

    private readonly ConcurrentDictionary<Guid, Pool> _pools = new();

    private sealed record Pool(string Fingerprint, NpgsqlDataSource DataSource);

    /// <summary>The application_name the gateway's sessions carry on the datasource, so its operators can see them.</summary>
    public static string ApplicationName(Guid datasourceId) => $"integrations-ds-{datasourceId:N}";

    public async Task<Result<NpgsqlConnection>> OpenAsync(DatasourceTarget target, string password, CancellationToken ct)
    {
        var addresses = await guard.CheckHostAsync(target.Host, ct);
        if (!addresses.IsSuccess) return addresses.Error!;
        var address = addresses.Value.OrderBy(a => a.AddressFamily == AddressFamily.InterNetwork ? 0 : 1).First();

        var pool = PoolFor(target, address, password);
        try
        {
            return await pool.OpenConnectionAsync(ct);
        }
        catch (Exception e) when (DatasourceErrors.From(e, target) is { } error)
        {
            return error;
        }
    }

    /// <summary>Drops the datasource's pool (deleted, or its password may have changed).</summary>
    public void Forget(Guid datasourceId)
    {
        if (_pools.TryRemove(datasourceId, out var pool)) _ = pool.DataSource.DisposeAsync().AsTask();
    }

    private NpgsqlDataSource PoolFor(DatasourceTarget target, IPAddress address, string password)
    {
        var settings = new NpgsqlConnectionStringBuilder
        {
            Host = address.ToString(),
            Port = target.Port,
            Database = target.Database,
            Username = target.Username,
            Password = password,
            SslMode = target.TlsMode switch
            {
                "disable" => SslMode.Disable,
                "prefer" => SslMode.Prefer,
                "require" => SslMode.Require,
                _ => SslMode.VerifyFull,
            },
            ApplicationName = ApplicationName(target.Id),
            Timeout = 10,
            CommandTimeout = 30,
            Pooling = true,
            MinPoolSize = 0,
            MaxPoolSize = MaxPoolSize,
            ConnectionIdleLifetime = 60,
            Enlist = false,
            // The definition check reads the statement's parse tree from a notice's detail (SqlGateway.DescribeAsync);
            // errors are reported by their message alone (DatasourceErrors), so no detail reaches a caller.
            IncludeErrorDetail = true,
            LogParameters = false,
            // Arrays with NULL elements read as int?[] and the like instead of failing.
            ArrayNullabilityMode = ArrayNullabilityMode.PerInstance,
        };
        var fingerprint = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(settings.ConnectionString + "|" + target.Host)));

        while (true)
        {
            var found = _pools.TryGetValue(target.Id, out var existing);
            if (found && existing!.Fingerprint == fingerprint) return existing.DataSource;
            var created = Create(settings, target.Host, fingerprint);
            if (found ? _pools.TryUpdate(target.Id, created, existing!) : _pools.TryAdd(target.Id, created))
            {
                if (found) _ = existing!.DataSource.DisposeAsync().AsTask();
                return created.DataSource;
            }
            _ = created.DataSource.DisposeAsync().AsTask();
        }
    }

    private static Pool Create(NpgsqlConnectionStringBuilder settings, string hostName, string fingerprint)
    {
        var builder = new NpgsqlDataSourceBuilder(settings.ConnectionString) { Name = "datasource" };
        // Connected by address, verified by name: the certificate must match the host the tenant registered.
        if (!IPAddress.TryParse(hostName.Trim('[', ']'), out _))
        {
            builder.UseSslClientAuthenticationOptionsCallback(options => options.TargetHost = hostName);
        }
        return new Pool(fingerprint, builder.Build());
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var pool in _pools.Values) await pool.DataSource.DisposeAsync();
        _pools.Clear();
    }
}

/// <summary>Turns what a datasource connection throws into the caller's error: what failed, never a secret.</summary>
internal static class DatasourceErrors
{
    public static Error? From(Exception exception, DatasourceTarget target, int? timeoutMs = null) => exception switch
    {
        PostgresException { SqlState: PostgresErrorCodes.QueryCanceled } => Error.UpstreamTimeout(
            $"The datasource cancelled the statement at its timeout ({timeoutMs ?? 0} ms)."),
        PostgresException { SqlState: PostgresErrorCodes.InvalidPassword } => Error.UpstreamError(
            $"Authentication failed: the datasource refused the password for user '{target.Username}' (28P01)."),
        PostgresException { SqlState: PostgresErrorCodes.InvalidAuthorizationSpecification } e => Error.UpstreamError(
            $"Authentication failed for user '{target.Username}' (28000): {e.MessageText}"),
        PostgresException { SqlState: PostgresErrorCodes.InvalidCatalogName } => Error.UpstreamError(
            $"The database '{target.Database}' does not exist on the datasource (3D000)."),
        PostgresException e => Error.UpstreamError($"The datasource refused the statement ({e.SqlState}): {e.MessageText}"),
        NpgsqlException { InnerException: TimeoutException } or TimeoutException => Error.UpstreamTimeout(
            $"The datasource at {target.Host}:{target.Port} did not answer in time."),
        NpgsqlException { InnerException: SocketException s } => Error.UpstreamError(
            $"Could not connect to the datasource at {target.Host}:{target.Port} ({s.SocketErrorCode})."),
        NpgsqlException { InnerException: System.Security.Authentication.AuthenticationException } => Error.UpstreamError(
            $"TLS with the datasource at {target.Host}:{target.Port} failed (tls_mode '{target.TlsMode}')."),
        NpgsqlException e => Error.UpstreamError($"The datasource connection failed: {e.Message}"),
        _ => null,
    };
}
