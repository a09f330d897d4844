using System.Text.Json;
using Integrations.Common;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;

namespace Integrations.Features.Incidents;

/// <summary>What the incidents.* slices share: the shape they answer with and the row they read.</summary>
public static class Incident
{
    public const string SubjectType = "incident";

    public const string ConnectorFailure = "connector_failure";

    public static readonly string[] Kinds = ["tool_failure", "health_failure", "cost_anomaly", "call_unknown", "llm_failure", "budget_threshold", ConnectorFailure];
    public static readonly string[] Statuses = ["open", "acknowledged", "resolved"];

    /// <summary>open → acknowledged → resolved, or open → resolved.</summary>
    internal static readonly StatusTransition Acknowledging = new(SubjectType, ["open"], "acknowledged", "acknowledged");

    internal static readonly StatusTransition Resolving = new(SubjectType, ["open", "acknowledged"], "resolved", "resolved");

    private const string StatusSql = "SELECT status FROM incidents WHERE tenant_id = @TenantId AND id = @Id";

    /// <summary>Moves the incident and stamps who did it and when (<c>acknowledged_*</c> or <c>resolved_*</c>).</summary>
    internal static async Task<Result<Response>> MoveAsync(
        TenantSession session, AuditTrail audit, CallerContext caller, StatusTransition transition, Guid id, CancellationToken ct)
    {
        var stamp = transition.To; // acknowledged_at/_by or resolved_at/_by; To is one of this file's constants
        var moveSql = $"""
            UPDATE incidents SET status = @To, {stamp}_at = now(), {stamp}_by = @Actor
            WHERE tenant_id = @TenantId AND id = @Id AND status = ANY(@From)
            RETURNING {Columns}
            """;
        var moved = await transition.RunAsync<Row>(session, id, moveSql, StatusSql, new { caller.Required.Actor }, ct);
        if (!moved.IsSuccess) return moved.Error!;
        var row = moved.Value;
        audit.Record(SubjectType, id.ToString(), new { Status = transition.To, row.Kind, row.SubjectType, row.SubjectId });
        return row.ToResponse();
    }

    public sealed record Response(
        Guid Id, [OneOf(typeof(Incident), nameof(Incident.Kinds))] string Kind, string Severity, string SubjectType, string SubjectId, string Message, int Occurrences,
        DateTimeOffset FirstSeen, DateTimeOffset LastSeen, [OneOf(typeof(Incident), nameof(Incident.Statuses))] string Status,
        DateTimeOffset? AcknowledgedAt, string? AcknowledgedBy, DateTimeOffset? ResolvedAt, string? ResolvedBy, JsonElement? Evidence);

    internal const string Columns = """
        id, kind, severity, subject_type, subject_id, message, occurrences, first_seen, last_seen, status,
        acknowledged_at, acknowledged_by, resolved_at, resolved_by, evidence
        """;

    internal sealed class Row
    {
        public Guid Id { get; init; }
        public required string Kind { get; init; }
        public required string Severity { get; init; }
        public required string SubjectType { get; init; }
        public required string SubjectId { get; init; }
        public required string Message { get; init; }
        public int Occurrences { get; init; }
        public DateTimeOffset FirstSeen { get; init; }
        public DateTimeOffset LastSeen { get; init; }
        public required string Status { get; init; }
        public DateTimeOffset? AcknowledgedAt { get; init; }
        public string? AcknowledgedBy { get; init; }
        public DateTimeOffset? ResolvedAt { get; init; }
        public string? ResolvedBy { get; init; }
        public string? Evidence { get; init; }

        public Response ToResponse() => new(Id, Kind, Severity, SubjectType, SubjectId, Message, Occurrences, FirstSeen, LastSeen,
            Status, AcknowledgedAt, AcknowledgedBy, ResolvedAt, ResolvedBy, Evidence is null ? null : JsonSerializer.Deserialize<JsonElement>(Evidence));
    }
}
