using Dapper;
using Integrations.Common;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;

namespace Integrations.Features.Integrations;

/// <summary>
/// The status machine enable and disable share: created → enabled ⇄ disabled (an integration in
/// <c>error</c> may be enabled again or disabled). Any other move is 409 <c>invalid_transition</c>.
/// </summary>
internal sealed class IntegrationLifecycle(TenantSession session, AuditTrail audit)
{
    private const string MoveSql = $"""
        UPDATE cus_integrations SET status = @To, updated_at = now()
        WHERE tenant_id = @TenantId AND id = @Id AND deleted_at IS NULL AND status = ANY(@From)
        RETURNING {Integration.Columns}
        """;

    private const string StatusSql = "SELECT status FROM cus_integrations WHERE tenant_id = @TenantId AND id = @Id AND deleted_at IS NULL";

    public async Task<Result<Integration.Response>> MoveAsync(Guid id, string[] from, string to, string verb, CancellationToken ct)
    {
        var connection = await session.ConnectionAsync(ct);
        var row = await connection.QuerySingleOrDefaultAsync<Integration.Row>(
            new CommandDefinition(MoveSql, new { session.TenantId, Id = id, From = from, To = to }, cancellationToken: ct));
        if (row is null)
        {
            var current = await connection.QuerySingleOrDefaultAsync<string>(
                new CommandDefinition(StatusSql, new { session.TenantId, Id = id }, cancellationToken: ct));
            return current is null
                ? Error.NotFound(Integration.SubjectType)
                : Error.InvalidTransition(Integration.SubjectType, current, verb);
        }
        audit.Record(Integration.SubjectType, row.Id.ToString(), new { Status = to, AllowedFrom = from });
        return row.ToResponse();
    }
}
