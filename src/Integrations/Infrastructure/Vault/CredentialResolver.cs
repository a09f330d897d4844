using System.Text;
using System.Text.Json;
using Dapper;
using Integrations.Common;
using Integrations.Features.Integrations;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Npgsql;

namespace Integrations.Infrastructure.Vault;

/// <summary>
/// A request that needs a secret: the <see cref="Pipeline.CredentialBehavior{TRequest,TResponse}"/> resolves it for
/// <see cref="CredentialAccessor"/> before the handler runs, and the handler reads it from <see cref="CredentialContext"/>.
/// </summary>
public interface INeedsCredential
{
    /// <summary>The object the secret is for; its grant is checked and it is named in the access log.</summary>
    CredentialAccessor CredentialAccessor { get; }

    /// <summary>The reference to resolve; null means the one stored on the accessor's own row (its <c>credential_ref</c>).</summary>
    string? CredentialRef { get; }
}

/// <summary>The request's resolved secret, set by the credential behavior for the handler and cleared after it.</summary>
public sealed class CredentialContext
{
    public ResolvedCredential? Current { get; private set; }

    public ResolvedCredential Required => Current ?? throw new InvalidOperationException("No credential was resolved for this request.");

    internal void Set(ResolvedCredential credential) => Current = credential;

    internal void Clear() => Current = null;
}

/// <summary>
/// Resolves references to secrets, deny by default. A <c>cus-vault://</c> reference needs a live credential of the
/// caller's tenant and a grant to the accessor; <c>encrypted://</c> must decrypt for the caller's tenant; <c>env://</c>
/// resolves only for system callers on behalf of the system accessor; <c>hcvault://</c> must lie under the caller's
/// tenant path, or name a Vault connection (a <c>hashicorp_vault</c> credential) of the caller's own tenant, and be the
/// reference the accessor holds (or, at registration, one the caller may attach). Every attempt, allowed or denied, is written to
/// <c>credential_access_log</c> and the audit trail, committed in the tenant's batch (<see cref="TenantBatches"/>) before the secret is
/// released: if that record cannot be written, resolution throws and nothing is released.
/// </summary>
public sealed class CredentialResolver(
    NpgsqlDataSource dataSource, CallerContext callerContext, VaultCrypto crypto, AuditKeys auditKeys, HashiCorpVault hashiCorp, OAuthClientTokens oauthTokens,
    TenantBatches batches, TenantVaults tenantVaults)
{
    public const string SubjectType = "credential";
    public const string AccessedAction = "credential.accessed";
    public const string DeniedAction = "credential.denied";

    /// <summary>Where each grantable accessor keeps its reference (tables of other slices; columns by convention).</summary>
    private static readonly Dictionary<string, string> AccessorTables = new()
    {
        [CredentialAccessor.Integration] = "cus_integrations",
        [CredentialAccessor.McpServer] = "mcp_servers",
        [CredentialAccessor.Datasource] = "datasources",
        [CredentialAccessor.Connection] = "connections",
    };

    private sealed record Decision(bool Allowed, string Reason, Guid? CredentialId, ResolvedCredential? Credential, Error? Error);

    /// <summary>
    /// <paramref name="destinationHost"/> is for an accessor whose row is not written yet (a registration resolves
    /// before it stores); otherwise the destination is read from the accessor's row, so a bound credential follows
    /// the URL or host as it is now, not as it was when it was attached.
    /// <para>
    /// <paramref name="whenAllowed"/> (a governed call's <c>started</c>) commits in the same transaction as the access
    /// record when access is allowed, one commit instead of two before the side effect; when access is denied it is not
    /// written.
    /// </para>
    /// </summary>
    public async Task<Result<ResolvedCredential>> ResolveAsync(
        CredentialAccessor accessor, string reference, string operation, CancellationToken ct, string? destinationHost = null,
        AuditWrite? whenAllowed = null)
    {
        var caller = callerContext.Required;
        using var signing = AuditKeys.Use(auditKeys); // its audit write is its own, whether or not a request is around it
        Decision decision;
        await using (var session = new TenantSession(dataSource, callerContext))
        {
            var connection = await session.ConnectionAsync(ct);
            decision = await DecideAsync(connection, caller, accessor, reference, destinationHost, ct);
            await session.CommitAsync(ct); // a rotated refresh token sealed while deciding
        }
        // The access record commits before the secret is released, in the tenant's batch: a busy tenant's resolutions
        // share commits (and the chain head) with its other writes instead of taking turns on the head one by one.
        await RecordAsync(caller, accessor, reference, operation, decision, decision.Allowed ? whenAllowed : null);
        return decision.Allowed ? decision.Credential! : decision.Error!;
    }

    /// <summary>
    /// The destination refused <paramref name="stale"/> (HTTP 401): for an OAuth credential its access token is dropped
    /// and the credential resolved again — grant, binding and access log as for any resolution — so a new token is
    /// exchanged; null for any other type, whose secret would only be refused again.
    /// </summary>
    public async Task<Result<ResolvedCredential>?> RenewAsync(
        CredentialAccessor accessor, string reference, string operation, ResolvedCredential stale, CancellationToken ct)
    {
        if (!CredentialTypes.IsOAuth(stale.Type) || stale is not { CredentialId: { } id, Version: { } version, Value: { } token }) return null;
        oauthTokens.Forget(id, version, token);
        return await ResolveAsync(accessor, reference, operation, ct);
    }

    /// <summary>Reads the reference stored on a grantable accessor's row: (false, null) when the row does not exist for the tenant.</summary>
    public static async Task<(bool Found, string? Reference)> StoredReferenceAsync(
        NpgsqlConnection connection, string tenantId, CredentialAccessor accessor, CancellationToken ct)
    {
        if (!AccessorTables.TryGetValue(accessor.Type, out var table)) return (false, null);
        var row = await connection.QuerySingleOrDefaultAsync<StoredRef>(new CommandDefinition(
            $"SELECT credential_ref FROM {table} WHERE tenant_id = @TenantId AND id = @Id AND deleted_at IS NULL",
            new { TenantId = tenantId, accessor.Id }, cancellationToken: ct));
        return row is null ? (false, null) : (true, row.CredentialRef);
    }

    private sealed record StoredRef(string? CredentialRef);

    private sealed class Destination
    {
        public string? Target { get; init; }
        public string? Provider { get; init; }
    }

    /// <summary>The host a grantable accessor sends its secret to, read from its row; null when there is no such row.</summary>
    public static async Task<string?> DestinationHostAsync(NpgsqlConnection connection, string tenantId, CredentialAccessor accessor, CancellationToken ct)
    {
        var sql = accessor.Type switch
        {
            CredentialAccessor.McpServer => "SELECT url AS target, NULL AS provider FROM mcp_servers",
            CredentialAccessor.Datasource => "SELECT host AS target, NULL AS provider FROM datasources",
            CredentialAccessor.Integration => "SELECT base_url AS target, provider FROM cus_integrations",
            // A connector's destination is the one address its configuration names (a URL, or an SMTP host).
            CredentialAccessor.Connection => """
                SELECT coalesce(configuration->>'base_url', configuration->>'url', configuration->>'service_url', configuration->>'host',
                       CASE connector WHEN 'slack' THEN 'https://slack.com/api' END) AS target,
                       NULL AS provider FROM connections
                """,
            _ => null,
        };
        if (sql is null) return null;
        var row = await connection.QuerySingleOrDefaultAsync<Destination>(new CommandDefinition(
            sql + " WHERE tenant_id = @TenantId AND id = @Id AND deleted_at IS NULL", new { TenantId = tenantId, accessor.Id }, cancellationToken: ct));
        return row is null ? null : DestinationHost(accessor.Type, row.Target, row.Provider);
    }

    /// <summary>The host of an accessor's destination: a URL's host, a datasource's host, an integration's base URL or its provider's default.</summary>
    public static string? DestinationHost(string accessorType, string? target, string? provider = null) => accessorType switch
    {
        CredentialAccessor.Datasource => target,
        CredentialAccessor.Connection when !Uri.TryCreate(target, UriKind.Absolute, out _) => target,
        CredentialAccessor.Integration when provider is not null => ProviderHealthProbe.Target(provider, target).Url.IdnHost,
        _ => Uri.TryCreate(target, UriKind.Absolute, out var url) ? url.IdnHost : null,
    };

    private async Task<Decision> DecideAsync(
        NpgsqlConnection connection, Caller caller, CredentialAccessor accessor, string reference, string? destinationHost, CancellationToken ct)
    {
        if (reference.StartsWith(CredentialReference.CusVaultScheme, StringComparison.Ordinal))
        {
            var rest = reference[CredentialReference.CusVaultScheme.Length..];
            var slash = rest.IndexOf('/');
            if (slash > 0 && rest[..slash] != caller.TenantId)
            {
                return Deny("other_tenant", CredentialErrors.Denied("The reference names another tenant's vault; a credential can only be used by its own tenant."));
            }
            if (!CredentialReference.TryParse(reference, caller.TenantId, systemScope: false, out var parsed, out var error))
            {
                return Deny("invalid_reference", CredentialErrors.Denied(error));
            }
            return await DecideVaultAsync(connection, caller.TenantId, accessor, parsed!, destinationHost, ct);
        }
        if (reference.StartsWith(CredentialReference.EncryptedScheme, StringComparison.Ordinal))
        {
            try
            {
                var plaintext = await crypto.DecryptReferenceAsync(reference, caller.TenantId, ct);
                return new Decision(true, "encrypted_reference", null, ResolvedCredential.Opaque(reference, Encoding.UTF8.GetString(plaintext)), null);
            }
            catch (MasterKeyUnavailableException e)
            {
                return Deny("master_key_unavailable", CredentialErrors.Unreadable(e.Message));
            }
            catch (KeyServiceUnavailableException e)
            {
                return Deny("key_service_unavailable", CredentialErrors.KeyServiceUnavailable(e.Message));
            }
            catch (VaultIntegrityException)
            {
                return Deny("integrity_check_failed", CredentialErrors.Denied(
                    "The encrypted:// reference does not decrypt for this tenant: it was altered or made for another tenant."));
            }
        }
        if (reference.StartsWith(CredentialReference.EnvScheme, StringComparison.Ordinal))
        {
            if (!caller.IsSystem || !accessor.IsSystem)
            {
                return Deny("env_not_allowed", CredentialErrors.Denied(
                    "env:// references resolve only for the service's own configuration, never for a tenant object; store the secret with POST /credentials and use its cus-vault:// reference."));
            }
            var value = Environment.GetEnvironmentVariable(reference[CredentialReference.EnvScheme.Length..]);
            return string.IsNullOrEmpty(value)
                ? Deny("not_found", CredentialErrors.NotFound("The environment variable the env:// reference names is not set."))
                : new Decision(true, "environment", null, ResolvedCredential.Opaque(reference, value), null);
        }
        if (reference.StartsWith(CredentialReference.HashiCorpScheme, StringComparison.Ordinal))
        {
            return await DecideHashiCorpAsync(connection, caller, accessor, reference, destinationHost, ct);
        }
        CredentialReference.TryParse(reference, caller.TenantId, systemScope: false, out _, out var refusal);
        return Deny("invalid_reference", CredentialErrors.Denied(refusal));
    }

    private async Task<Decision> DecideHashiCorpAsync(
        NpgsqlConnection connection, Caller caller, CredentialAccessor accessor, string reference, string? destinationHost, CancellationToken ct)
    {
        var systemScope = caller.IsSystem && accessor.IsSystem;
        if (!CredentialReference.TryParse(reference, caller.TenantId, systemScope, out _, out var error)
            || !CredentialReference.TryParseHashiCorp(reference, out var connectionName, out var mount, out var path, out var field))
        {
            return Deny("invalid_reference", CredentialErrors.Denied(error));
        }
        // No grant rows for an external secret: the reference stored on the accessor is its grant. A registration
        // resolves before its row exists, after attaching (which checked the caller's credentials:use).
        if (!systemScope)
        {
            var allowed = destinationHost is not null
                ? caller.Has(Scopes.CredentialsUse)
                : (await StoredReferenceAsync(connection, caller.TenantId, accessor, ct)).Reference == reference;
            if (!allowed)
            {
                return Deny("no_grant", CredentialErrors.Denied(
                    $"This {accessor.Type.Replace('_', ' ')} does not hold the hcvault:// reference; attach it first (scope {Scopes.CredentialsUse})."));
            }
        }
        var vault = hashiCorp;
        Guid? connectionId = null;
        if (connectionName is not null)
        {
            var connected = await TenantVaultAsync(connection, caller.TenantId, connectionName, ct);
            if (connected.Denial is { } denial) return denial;
            (vault, connectionId) = (connected.Vault!, connected.CredentialId);
        }
        var value = await vault.ReadFieldAsync(mount, path, field, ct);
        return value.IsSuccess
            ? new Decision(true, "hashicorp_vault", connectionId, ResolvedCredential.Opaque(reference, value.Value), null)
            : Deny(value.Error!.Code switch { "credential_not_found" => "not_found", "ssrf_blocked" => "host_not_allowed", _ => "backend_unavailable" },
                value.Error, connectionId);
    }

    private const string ConnectionSql = """
        SELECT c.id, c.type, c.version, c.ciphertext, c.nonce, c.tag, c.wrapped_key, c.key_id, c.allowed_hosts, false AS granted
        FROM credentials c
        WHERE c.tenant_id = @TenantId AND c.name = @Name AND c.deleted_at IS NULL
        """;

    /// <summary>
    /// The tenant's Vault connection named <paramref name="name"/>: a hashicorp_vault credential of this tenant (the row
    /// is looked up in the caller's tenant alone, so another tenant's connection is never found), opened like any
    /// credential; its token goes to the Vault's address, which its allowed_hosts, when set, must allow.
    /// </summary>
    private async Task<(HashiCorpVault? Vault, Guid CredentialId, Decision? Denial)> TenantVaultAsync(
        NpgsqlConnection connection, string tenantId, string name, CancellationToken ct)
    {
        var row = await connection.QuerySingleOrDefaultAsync<VaultRow>(new CommandDefinition(ConnectionSql, new { TenantId = tenantId, Name = name }, cancellationToken: ct));
        if (row is null || row.Type != CredentialTypes.HashiCorpVault)
        {
            return (null, default, Deny("not_found", CredentialErrors.NotFound(row is null
                ? $"This tenant has no HashiCorp Vault connection named '{name}': store one (type {CredentialTypes.HashiCorpVault}) with that name."
                : $"The credential '{name}' is a {row.Type} credential, not a HashiCorp Vault connection ({CredentialTypes.HashiCorpVault})."), row?.Id));
        }
        try
        {
            var payload = await crypto.OpenAsync(new SealedSecret(row.Ciphertext, row.Nonce, row.Tag, row.WrappedKey, row.KeyId), tenantId, row.Id, row.Version, ct);
            var fields = ResolvedCredential.FromPayload(row.Type, name, row.Id, row.Version, payload).Fields;
            var settings = HashiCorpVaultSettings.FromFields(fields, tenantVaults.CacheTtl);
            if (!settings.IsSuccess) throw new VaultIntegrityException("The stored Vault connection no longer parses.");
            if (row.AllowedHosts is { } allowed && !CredentialHosts.Allows(allowed, settings.Value.Address!.IdnHost))
            {
                return (null, row.Id, Deny("host_not_allowed", CredentialErrors.HostNotAllowed(
                    $"The Vault connection '{name}' may be sent only to {string.Join(", ", allowed)}, not to '{settings.Value.Address!.IdnHost}'."), row.Id));
            }
            return (tenantVaults.For(row.Id, row.Version, name, settings.Value), row.Id, null);
        }
        catch (Exception e) when (Unopenable(e, row.Id) is { } denied)
        {
            return (null, row.Id, denied);
        }
    }

    /// <summary>Why a sealed row could not be opened, as the decision that refuses it; null for any other exception.</summary>
    private static Decision? Unopenable(Exception exception, Guid credentialId) => exception switch
    {
        MasterKeyUnavailableException e => Deny("master_key_unavailable", CredentialErrors.Unreadable(e.Message), credentialId),
        KeyServiceUnavailableException e => Deny("key_service_unavailable", CredentialErrors.KeyServiceUnavailable(e.Message), credentialId),
        VaultIntegrityException or JsonException => Deny("integrity_check_failed", CredentialErrors.Unreadable(
            "The stored credential failed its integrity check and was not used; rotate it to store the secret again."), credentialId),
        _ => null,
    };

    private sealed class VaultRow
    {
        public Guid Id { get; init; }
        public required string Type { get; init; }
        public int Version { get; init; }
        public required byte[] Ciphertext { get; init; }
        public required byte[] Nonce { get; init; }
        public required byte[] Tag { get; init; }
        public required byte[] WrappedKey { get; init; }
        public required string KeyId { get; init; }
        public bool Granted { get; init; }
        public string[]? AllowedHosts { get; init; }
    }

    private const string VaultSql = """
        SELECT c.id, c.type, c.version, c.ciphertext, c.nonce, c.tag, c.wrapped_key, c.key_id, c.allowed_hosts,
               EXISTS (SELECT 1 FROM credential_grants g
                       WHERE g.tenant_id = c.tenant_id AND g.credential_id = c.id
                         AND g.accessor_type = @AccessorType AND g.accessor_id = @AccessorId) AS granted
        FROM credentials c
        WHERE c.tenant_id = @TenantId AND c.id = @Id AND c.deleted_at IS NULL
        """;

    private async Task<Decision> DecideVaultAsync(
        NpgsqlConnection connection, string tenantId, CredentialAccessor accessor, CredentialReference reference, string? destinationHost, CancellationToken ct)
    {
        var row = await connection.QuerySingleOrDefaultAsync<VaultRow>(new CommandDefinition(VaultSql, new
        {
            TenantId = tenantId,
            Id = reference.CredentialId,
            AccessorType = accessor.Type,
            AccessorId = accessor.Id,
        }, cancellationToken: ct));
        if (row is null) return Deny("not_found", CredentialErrors.NotFound(), reference.CredentialId);
        if (row.Type == CredentialTypes.HashiCorpVault)
        {
            return Deny("invalid_reference", CredentialErrors.Denied(
                "A HashiCorp Vault connection is not a secret to send anywhere: name it in hcvault://<connection>@<mount>/<path>#<field> references."), row.Id);
        }
        if (!row.Granted || accessor.IsSystem)
        {
            return Deny("no_grant", CredentialErrors.Denied(
                $"This {accessor.Type.Replace('_', ' ')} has no grant on the credential. Attaching the reference with a write-scoped request " +
                "grants it, or POST /credentials/{id}/grants."), row.Id);
        }
        if (row.AllowedHosts is { } allowed)
        {
            var host = destinationHost ?? await DestinationHostAsync(connection, tenantId, accessor, ct);
            if (host is null || !CredentialHosts.Allows(allowed, host))
            {
                return Deny("host_not_allowed", CredentialErrors.HostNotAllowed(
                    $"The credential may be sent only to {string.Join(", ", allowed)}; this {accessor.Type.Replace('_', ' ')} now sends it to '{host ?? "(unknown)"}'."), row.Id);
            }
        }
        try
        {
            var payload = await crypto.OpenAsync(new SealedSecret(row.Ciphertext, row.Nonce, row.Tag, row.WrappedKey, row.KeyId), tenantId, row.Id, row.Version, ct);
            var credential = ResolvedCredential.FromPayload(row.Type, reference.Value, row.Id, row.Version, payload);
            if (CredentialTypes.IsOAuth(row.Type))
            {
                // The client secret goes to the token endpoint: a destination the binding must allow too.
                var tokenHost = OAuthClientTokens.TokenHost(credential.Fields);
                if (row.AllowedHosts is { } bound && (tokenHost is null || !CredentialHosts.Allows(bound, tokenHost)))
                {
                    return Deny("host_not_allowed", CredentialErrors.HostNotAllowed(
                        $"The credential may be sent only to {string.Join(", ", bound)}; its token URL is on '{tokenHost ?? "(unknown)"}'."), row.Id);
                }
                var token = await oauthTokens.AccessTokenAsync(row.Id, row.Version, row.Type, credential.Fields, ct);
                if (!token.IsSuccess) return Deny("token_exchange_failed", token.Error!, row.Id);
                if (token.Value.RotatedRefreshToken is { } rotated) await SealRotatedAsync(connection, tenantId, row, credential.Fields, rotated, ct);
                credential = credential.WithAccessToken(token.Value.AccessToken);
            }
            return new Decision(true, "granted", row.Id, credential, null);
        }
        catch (Exception e) when (Unopenable(e, row.Id) is { } denied)
        {
            return denied;
        }
    }

    /// <summary>Fails rather than waits on a row the request's own transaction holds.</summary>
    private const string ResealSql = """
        SET LOCAL lock_timeout = '5s';
        UPDATE credentials SET ciphertext = @Ciphertext, nonce = @Nonce, tag = @Tag, wrapped_key = @WrappedKey, key_id = @KeyId
        WHERE tenant_id = @TenantId AND id = @Id AND version = @Version AND deleted_at IS NULL
        """;

    /// <summary>
    /// The token server rotated the refresh token (RFC 6749 §6): the old one may no longer work, so the new one is sealed
    /// in place of it, in the same version (nothing that refers to the credential changes). A credential rotated by a
    /// person meanwhile (another version) keeps what that person stored.
    /// </summary>
    private async Task SealRotatedAsync(NpgsqlConnection connection, string tenantId, VaultRow row, IReadOnlyDictionary<string, string> fields,
        string rotated, CancellationToken ct)
    {
        var material = new SecretMaterial(Fields: new Dictionary<string, string>(fields) { [OAuthClientTokens.RefreshToken] = rotated });
        var payload = material.ToPayload();
        try
        {
            var sealedSecret = await crypto.SealAsync(payload, tenantId, row.Id, row.Version, ct);
            await connection.ExecuteAsync(new CommandDefinition(ResealSql, new
            {
                TenantId = tenantId,
                row.Id,
                row.Version,
                sealedSecret.Ciphertext,
                sealedSecret.Nonce,
                sealedSecret.Tag,
                sealedSecret.WrappedKey,
                sealedSecret.KeyId,
            }, cancellationToken: ct));
        }
        finally
        {
            System.Security.Cryptography.CryptographicOperations.ZeroMemory(payload);
        }
    }

    private static Decision Deny(string reason, Error error, Guid? credentialId = null) => new(false, reason, credentialId, null, error);

    private const string LogSql = """
        INSERT INTO credential_access_log (id, tenant_id, credential_id, reference, accessor_type, accessor_id, actor, operation, outcome, reason)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
        """;

    private Task RecordAsync(Caller caller, CredentialAccessor accessor, string reference, string operation, Decision decision, AuditWrite? with)
    {
        var described = CredentialReference.Describe(reference);
        var outcome = decision.Allowed ? "allowed" : "denied";
        var accessorId = accessor.IsSystem ? CredentialAccessor.SystemType : accessor.Id.ToString();
        var audit = new AuditWrite(caller,
        [
            new AuditEvent(decision.Allowed ? AccessedAction : DeniedAction, SubjectType, decision.CredentialId?.ToString() ?? described, new
            {
                Reference = described,
                AccessorType = accessor.Type,
                AccessorId = accessorId,
                Operation = operation,
                decision.Reason,
            }),
        ]);
        return batches.WriteAsync(caller.TenantId, with is null ? [audit] : [audit, with], batch => batch.BatchCommands.Add(PositionalCommand.Of(LogSql,
            Ids.New(), caller.TenantId, PositionalCommand.Uuid(decision.CredentialId), described, accessor.Type, accessorId, caller.Actor,
            operation, outcome, decision.Reason)));
    }
}
