using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using Integrations.Common;
using Integrations.Infrastructure.Network;
using Integrations.Infrastructure.Vault;
using Npgsql;

namespace Integrations.Infrastructure.Datasources;

/// <summary>Where a datasource lives; the sign-in (<see cref="DatasourceSignIn"/>) travels separately, as resolved for this one connection.</summary>
public sealed record DatasourceTarget(Guid Id, string Host, int Port, string Database, string Username, string TlsMode);

/// <summary>
/// One small connection pool per datasource. Every open passes the <see cref="SsrfGuard"/>: the host is resolved
/// and checked each time and Npgsql connects to the checked address (the host name stays the TLS target), so a
/// DNS answer that changes cannot reach an address the guard refused. A changed address, password, certificate or
/// setting gets a fresh pool; the old one is disposed. A client certificate is presented in the TLS handshake, and its
/// <c>ca_certificate</c>, when given, is the only root the server's certificate may chain to (tls_mode verify-full).
/// </summary>
public sealed class DatasourceConnections(SsrfGuard guard) : IAsyncDisposable
{
    public const int MaxPoolSize = 10;

    private readonly ConcurrentDictionary<Guid, Pool> _pools = new();

    private sealed record Pool(string Fingerprint, NpgsqlDataSource DataSource);

    /// <summary>The application_name the gateway's sessions carry on the datasource, so its operators can see them.</summary>
    public static string ApplicationName(Guid datasourceId) => $"integrations-ds-{datasourceId:N}";

    public async Task<Result<NpgsqlConnection>> OpenAsync(DatasourceTarget target, DatasourceSignIn signIn, CancellationToken ct)
    {
        var addresses = await guard.CheckHostAsync(target.Host, ct);
        if (!addresses.IsSuccess) return addresses.Error!;
        var address = addresses.Value.OrderBy(a => a.AddressFamily == AddressFamily.InterNetwork ? 0 : 1).First();

        var pool = PoolFor(target, address, signIn);
        try
        {
            return await pool.OpenConnectionAsync(ct);
        }
        catch (NpgsqlException e) when (signIn.Certificate is not null && DatasourceErrors.CertificateRefusal(e, target) is { } refusal)
        {
            return refusal;
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

    private NpgsqlDataSource PoolFor(DatasourceTarget target, IPAddress address, DatasourceSignIn signIn)
    {
        var settings = new NpgsqlConnectionStringBuilder
        {
            Host = address.ToString(),
            Port = target.Port,
            Database = target.Database,
            Username = target.Username,
            Password = signIn.Password,
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
        var fingerprint = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(settings.ConnectionString + "|" + target.Host + "|" + signIn.Certificate?.Fingerprint)));

        while (true)
        {
            var found = _pools.TryGetValue(target.Id, out var existing);
            if (found && existing!.Fingerprint == fingerprint) return existing.DataSource;
            var created = Create(settings, target.Host, signIn.Certificate, fingerprint);
            if (found ? _pools.TryUpdate(target.Id, created, existing!) : _pools.TryAdd(target.Id, created))
            {
                if (found) _ = existing!.DataSource.DisposeAsync().AsTask();
                return created.DataSource;
            }
            _ = created.DataSource.DisposeAsync().AsTask();
        }
    }

    private static Pool Create(NpgsqlConnectionStringBuilder settings, string hostName, ClientCertificate? certificate, string fingerprint)
    {
        var builder = new NpgsqlDataSourceBuilder(settings.ConnectionString) { Name = "datasource" };
        // Connected by address, verified by name: the certificate must match the host the tenant registered.
        var byName = !IPAddress.TryParse(hostName.Trim('[', ']'), out _);
        var identity = certificate?.TlsOptions().ClientCertificateContext;
        if (byName || identity is not null)
        {
            builder.UseSslClientAuthenticationOptionsCallback(options =>
            {
                if (byName) options.TargetHost = hostName;
                // The context sends the intermediates with the leaf, as the server needs them to reach its CA.
                if (identity is not null) options.ClientCertificateContext = identity;
            });
        }
        if (certificate?.TrustedRoots is { } roots) builder.UseRootCertificates(roots);
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
            $"TLS with the datasource at {target.Host}:{target.Port} failed (tls_mode '{target.TlsMode}'): the server's certificate is not trusted " +
            "or does not name the host (a private CA goes in a client_certificate credential's ca_certificate)."),
        NpgsqlException e => Error.UpstreamError($"The datasource connection failed: {e.Message}"),
        _ => null,
    };

    /// <summary>
    /// A connection that presented a client certificate and broke in or right after the TLS handshake. Under TLS 1.3
    /// PostgreSQL checks the client's certificate only after the client's side of the handshake is done: a certificate
    /// not from its CA is refused with an alert the client reads as a failed read, before any message of the protocol.
    /// </summary>
    public static Error? CertificateRefusal(NpgsqlException exception, DatasourceTarget target) =>
        exception is not PostgresException && exception.InnerException is IOException
            ? Error.UpstreamError($"TLS with the datasource at {target.Host}:{target.Port} failed: the server refused the client certificate " +
                "(one not issued by a CA it trusts is refused this way, after the handshake).")
            : null;
}
