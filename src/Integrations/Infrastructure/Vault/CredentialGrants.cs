using System.Security.Cryptography;
using Dapper;
using Integrations.Common;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;

namespace Integrations.Infrastructure.Vault;

/// <summary>
/// Keeps an accessor's grant in step with the reference attached to it, inside the request's transaction: attaching a
/// <c>cus-vault://</c> reference (through a write-scoped request on the accessor) grants that credential and drops the
/// accessor's other grants, since an accessor holds one reference; attaching anything else, or deleting the accessor,
/// drops them all. Each change is an audit event of the request.
/// Attaching is the one door a secret leaves through, so it is guarded here for every accessor: the caller needs
/// <c>credentials:use</c>; a credential bound to hosts (<c>allowed_hosts</c>) attaches only to an accessor whose
/// destination is one of them; under the tenant's credential policy <c>require_allowed_hosts</c>, only bound
/// credentials attach; an <c>encrypted://</c> reference must decrypt for this tenant.
/// </summary>
public sealed class CredentialGrants(TenantSession session, AuditTrail audit, CallerContext caller, VaultCrypto crypto)
{
    public const string GrantedAction = "credential.granted";
    public const string RevokedAction = "credential.grant_revoked";

    private const string BindingSql = """
        SELECT c.allowed_hosts,
               coalesce((SELECT p.require_allowed_hosts FROM credential_policies p WHERE p.tenant_id = @TenantId), false) AS require_allowed_hosts
        FROM credentials c WHERE c.tenant_id = @TenantId AND c.id = @Id AND c.deleted_at IS NULL
        """;

    private const string PolicySql = "SELECT coalesce((SELECT require_allowed_hosts FROM credential_policies WHERE tenant_id = @TenantId), false)";

    private sealed class Binding
    {
        public string[]? AllowedHosts { get; init; }
        public bool RequireAllowedHosts { get; init; }
    }

    private const string DropOthersSql = """
        DELETE FROM credential_grants
        WHERE tenant_id = @TenantId AND accessor_type = @Type AND accessor_id = @AccessorId AND credential_id IS DISTINCT FROM @Keep::uuid
        RETURNING credential_id
        """;

    private const string GrantSql = """
        INSERT INTO credential_grants (tenant_id, credential_id, accessor_type, accessor_id, granted_by)
        VALUES (@TenantId, @CredentialId, @Type, @AccessorId, @Actor)
        ON CONFLICT DO NOTHING
        """;

    /// <summary>
    /// Call after the accessor row is written with <paramref name="reference"/> (null: the reference did not change);
    /// <paramref name="destinationHost"/> only for an accessor not stored yet (otherwise its row says where it sends).
    /// A <c>cus-vault://</c> reference to a credential that does not exist (or was deleted) fails with <c>credential_not_found</c>.
    /// </summary>
    public async Task<Error?> AttachAsync(CredentialAccessor accessor, string? reference, CancellationToken ct, string? destinationHost = null)
    {
        if (reference is null) return null;
        if (await MayAttachAsync(accessor, reference, destinationHost, ct) is { } refused) return refused;
        var credentialId = CredentialReference.VaultCredentialId(reference);
        await DropAsync(accessor, credentialId, ct);
        var connection = await session.ConnectionAsync(ct);
        if (credentialId is { } granted)
        {
            var added = await connection.ExecuteAsync(new CommandDefinition(GrantSql, new
            {
                session.TenantId,
                CredentialId = granted,
                accessor.Type,
                AccessorId = accessor.Id,
                caller.Required.Actor,
            }, cancellationToken: ct));
            if (added > 0) audit.Record(CredentialResolver.SubjectType, granted.ToString(), Details(accessor, "attached"), GrantedAction);
        }
        return null;
    }

    private const string ConnectionTypeSql = "SELECT type FROM credentials WHERE tenant_id = @TenantId AND name = @Name AND deleted_at IS NULL";

    /// <summary>Whether <paramref name="reference"/> may be attached to <paramref name="accessor"/>: null when it may, else why not.</summary>
    public async Task<Error?> MayAttachAsync(CredentialAccessor accessor, string reference, string? destinationHost, CancellationToken ct)
    {
        if (!caller.Required.Has(Scopes.CredentialsUse))
        {
            return Error.Forbidden($"Attaching a credential needs the scope '{Scopes.CredentialsUse}' (or admin).");
        }
        var connection = await session.ConnectionAsync(ct);
        if (CredentialReference.VaultCredentialId(reference) is { } id)
        {
            var binding = await connection.QuerySingleOrDefaultAsync<Binding>(new CommandDefinition(BindingSql, new { session.TenantId, Id = id }, cancellationToken: ct));
            if (binding is null) return CredentialErrors.NotFound("The cus-vault:// reference names no stored credential of this tenant; store it with POST /credentials first.");
            if (binding.AllowedHosts is { } allowed)
            {
                var host = destinationHost ?? await CredentialResolver.DestinationHostAsync(connection, session.TenantId, accessor, ct);
                if (host is null || !CredentialHosts.Allows(allowed, host))
                {
                    return CredentialErrors.HostNotAllowed(
                        $"The credential may be sent only to {string.Join(", ", allowed)}, not to '{host ?? "(unknown)"}'; attach it where it belongs, or change its allowed_hosts (scope admin).");
                }
            }
            else if (binding.RequireAllowedHosts)
            {
                return CredentialErrors.Unbound(
                    "The tenant's credential policy requires allowed_hosts: set the hosts this credential may be sent to (PATCH /credentials/{id}) before attaching it.");
            }
            return null;
        }
        if (CredentialReference.TryParseHashiCorp(reference, out var vaultConnection, out _, out _, out _) && vaultConnection is not null
            && await connection.ExecuteScalarAsync<string?>(new CommandDefinition(ConnectionTypeSql, new { session.TenantId, Name = vaultConnection }, cancellationToken: ct))
                != CredentialTypes.HashiCorpVault)
        {
            return CredentialErrors.NotFound(
                $"This tenant has no HashiCorp Vault connection named '{vaultConnection}': store one (type {CredentialTypes.HashiCorpVault}) with that name first.");
        }
        if (reference.StartsWith(CredentialReference.HashiCorpScheme, StringComparison.Ordinal)
            && await connection.ExecuteScalarAsync<bool>(new CommandDefinition(PolicySql, new { session.TenantId }, cancellationToken: ct)))
        {
            return CredentialErrors.Unbound(
                "The tenant's credential policy requires allowed_hosts, which an hcvault:// reference cannot carry: store the secret with POST /credentials and allowed_hosts.");
        }
        if (reference.StartsWith(CredentialReference.EncryptedScheme, StringComparison.Ordinal))
        {
            if (await connection.ExecuteScalarAsync<bool>(new CommandDefinition(PolicySql, new { session.TenantId }, cancellationToken: ct)))
            {
                return CredentialErrors.Unbound(
                    "The tenant's credential policy requires allowed_hosts, which an encrypted:// reference cannot carry: store the secret with POST /credentials and allowed_hosts.");
            }
            try
            {
                CryptographicOperations.ZeroMemory(await crypto.DecryptReferenceAsync(reference, session.TenantId, ct));
            }
            catch (KeyServiceUnavailableException e)
            {
                return CredentialErrors.KeyServiceUnavailable(e.Message);
            }
            catch (Exception e) when (e is VaultIntegrityException or MasterKeyUnavailableException)
            {
                return CredentialErrors.ForeignReference(
                    "The encrypted:// reference does not decrypt for this tenant: it was made for another tenant, altered, or under a master key this service no longer holds.");
            }
        }
        return null;
    }

    /// <summary>Drops every grant the accessor holds (call when the accessor is deleted).</summary>
    public Task DetachAllAsync(CredentialAccessor accessor, CancellationToken ct) => DropAsync(accessor, null, ct);

    private async Task DropAsync(CredentialAccessor accessor, Guid? keep, CancellationToken ct)
    {
        var connection = await session.ConnectionAsync(ct);
        var dropped = await connection.QueryAsync<Guid>(new CommandDefinition(DropOthersSql, new
        {
            session.TenantId,
            accessor.Type,
            AccessorId = accessor.Id,
            Keep = keep,
        }, cancellationToken: ct));
        foreach (var credentialId in dropped)
        {
            audit.Record(CredentialResolver.SubjectType, credentialId.ToString(), Details(accessor, "detached"), RevokedAction);
        }
    }

    private static object Details(CredentialAccessor accessor, string reason) =>
        new { AccessorType = accessor.Type, AccessorId = accessor.Id, Reason = reason };
}
