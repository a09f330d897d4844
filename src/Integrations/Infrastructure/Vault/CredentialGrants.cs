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
/// </summary>
public sealed class CredentialGrants(TenantSession session, AuditTrail audit, CallerContext caller)
{
    public const string GrantedAction = "credential.granted";
    public const string RevokedAction = "credential.grant_revoked";

    private const string LiveSql = "SELECT EXISTS (SELECT 1 FROM credentials WHERE tenant_id = @TenantId AND id = @Id AND deleted_at IS NULL)";

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
    /// Call after the accessor row is written with <paramref name="reference"/> (null: the reference did not change).
    /// A <c>cus-vault://</c> reference to a credential that does not exist (or was deleted) fails with <c>credential_not_found</c>.
    /// </summary>
    public async Task<Error?> AttachAsync(CredentialAccessor accessor, string? reference, CancellationToken ct)
    {
        if (reference is null) return null;
        var credentialId = CredentialReference.VaultCredentialId(reference);
        var connection = await session.ConnectionAsync(ct);
        if (credentialId is { } id)
        {
            var live = await connection.ExecuteScalarAsync<bool>(new CommandDefinition(LiveSql, new { session.TenantId, Id = id }, cancellationToken: ct));
            if (!live) return CredentialErrors.NotFound("The cus-vault:// reference names no stored credential of this tenant; store it with POST /credentials first.");
        }
        await DropAsync(accessor, credentialId, ct);
        if (credentialId is { } granted)
        {
            var added = await connection.ExecuteAsync(new CommandDefinition(GrantSql, new
            {
                session.TenantId, CredentialId = granted, accessor.Type, AccessorId = accessor.Id, caller.Required.Actor,
            }, cancellationToken: ct));
            if (added > 0) audit.Record(CredentialResolver.SubjectType, granted.ToString(), Details(accessor, "attached"), GrantedAction);
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
            session.TenantId, accessor.Type, AccessorId = accessor.Id, Keep = keep,
        }, cancellationToken: ct));
        foreach (var credentialId in dropped)
        {
            audit.Record(CredentialResolver.SubjectType, credentialId.ToString(), Details(accessor, "detached"), RevokedAction);
        }
    }

    private static object Details(CredentialAccessor accessor, string reason) =>
        new { AccessorType = accessor.Type, AccessorId = accessor.Id, Reason = reason };
}
