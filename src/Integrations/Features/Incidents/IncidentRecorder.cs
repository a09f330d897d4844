using System.Text.Json;
using Dapper;
using Integrations.Common;
using Npgsql;

namespace Integrations.Features.Incidents;

/// <param name="Evidence">What the incident was opened on, beyond the message (stored as JSON, snake_case); a bump replaces it.</param>
public sealed record IncidentReport(
    string Kind, string Severity, string SubjectType, string SubjectId, string DedupKey, string Message, object? Evidence = null);

public readonly record struct RecordedIncident(Guid Id, int Occurrences);

/// <summary>
/// Opens an incident, or bumps the unresolved one with the same dedup key (occurrences, last_seen, latest
/// message and evidence; the severity rises to the report's when that is worse, and never falls, so a notification rule
/// with a higher minimum severity hears of it once it qualifies). Runs on the caller's connection so it commits with
/// whatever it records.
/// </summary>
public sealed class IncidentRecorder
{
    private const string Sql = """
        INSERT INTO incidents AS i (id, tenant_id, kind, severity, subject_type, subject_id, message, dedup_key, evidence)
        VALUES (@Id, @TenantId, @Kind, @Severity, @SubjectType, @SubjectId, @Message, @DedupKey, @Evidence::jsonb)
        ON CONFLICT (tenant_id, dedup_key) WHERE status <> 'resolved'
        DO UPDATE SET occurrences = i.occurrences + 1, last_seen = now(), message = excluded.message, evidence = excluded.evidence,
            severity = CASE WHEN array_position(ARRAY['low', 'medium', 'high', 'critical'], excluded.severity)
                                 > array_position(ARRAY['low', 'medium', 'high', 'critical'], i.severity)
                            THEN excluded.severity ELSE i.severity END
        RETURNING id, occurrences
        """;

    private static readonly JsonSerializerOptions EvidenceJson = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

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
            Evidence = report.Evidence is null ? null : JsonSerializer.Serialize(report.Evidence, EvidenceJson),
        }, cancellationToken: ct));
        return new RecordedIncident(id, occurrences);
    }
}
