using Dapper;
using Integrations.Common;
using Npgsql;

namespace Integrations.Features.Incidents;

public sealed record IncidentReport(
    string Kind, string Severity, string SubjectType, string SubjectId, string DedupKey, string Message);

public readonly record struct RecordedIncident(Guid Id, int Occurrences);

/// <summary>
/// Opens an incident, or bumps the unresolved one with the same dedup key (occurrences, last_seen, latest
/// message). Runs on the caller's connection so it commits with whatever it records.
/// </summary>
public sealed class IncidentRecorder
{
    private const string Sql = """
        INSERT INTO incidents AS i (id, tenant_id, kind, severity, subject_type, subject_id, message, dedup_key)
        VALUES (@Id, @TenantId, @Kind, @Severity, @SubjectType, @SubjectId, @Message, @DedupKey)
        ON CONFLICT (tenant_id, dedup_key) WHERE status <> 'resolved'
        DO UPDATE SET occurrences = i.occurrences + 1, last_seen = now(), message = excluded.message
        RETURNING id, occurrences
        """;

    public async Task<RecordedIncident> OpenOrBumpAsync(NpgsqlConnection connection, string tenantId, IncidentReport report, CancellationToken ct)
    {
        var (id, occurrences) = await connection.QuerySingleAsync<(Guid, int)>(new CommandDefinition(Sql, new
        {
            Id = Ids.New(),
            TenantId = tenantId,
            report.Kind,
            report.Severity,
            report.SubjectType,
            report.SubjectId,
            Message = report.Message.Length > 2000 ? report.Message[..2000] : report.Message,
            report.DedupKey,
        }, cancellationToken: ct));
        return new RecordedIncident(id, occurrences);
    }
}
