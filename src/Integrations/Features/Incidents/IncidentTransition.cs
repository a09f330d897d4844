using Dapper;
using Integrations.Common;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;

namespace Integrations.Features.Incidents;

/// <summary>open → acknowledged → resolved (open → resolved too); anything else is 409 <c>invalid_transition</c>.</summary>
internal sealed class IncidentTransition(TenantSession session, AuditTrail audit, CallerContext caller)
{
    public async Task<Result<Incident.Response>> MoveAsync(Guid id, string[] from, string to, CancellationToken ct)
    {
        var stamp = to == "acknowledged" ? "acknowledged" : "resolved";
        var sql = $"""
            UPDATE incidents SET status = @To, {stamp}_at = now(), {stamp}_by = @Actor
            WHERE tenant_id = @TenantId AND id = @Id AND status = ANY(@From)
            RETURNING {Incident.Columns}
            """;
        var connection = await session.ConnectionAsync(ct);
        var row = await connection.QuerySingleOrDefaultAsync<Incident.Row>(new CommandDefinition(sql,
            new { session.TenantId, Id = id, From = from, To = to, caller.Required.Actor }, cancellationToken: ct));
        if (row is null)
        {
            var current = await connection.QuerySingleOrDefaultAsync<string>(new CommandDefinition(
                "SELECT status FROM incidents WHERE tenant_id = @TenantId AND id = @Id", new { session.TenantId, Id = id }, cancellationToken: ct));
            return current is null ? Error.NotFound(Incident.SubjectType) : Error.InvalidTransition(Incident.SubjectType, current, to);
        }
        audit.Record(Incident.SubjectType, id.ToString(), new { Status = to, row.Kind, row.SubjectType, row.SubjectId });
        return row.ToResponse();
    }
}
