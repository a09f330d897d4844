namespace Integrations.Features.Incidents;

/// <summary>What the incidents.* slices share: the shape they answer with and the row they read.</summary>
public static class Incident
{
    public const string SubjectType = "incident";

    public static readonly string[] Kinds = ["tool_failure", "health_failure", "cost_anomaly"];
    public static readonly string[] Statuses = ["open", "acknowledged", "resolved"];

    public sealed record Response(
        Guid Id, string Kind, string Severity, string SubjectType, string SubjectId, string Message, int Occurrences,
        DateTimeOffset FirstSeen, DateTimeOffset LastSeen, string Status,
        DateTimeOffset? AcknowledgedAt, string? AcknowledgedBy, DateTimeOffset? ResolvedAt, string? ResolvedBy);

    internal const string Columns = """
        id, kind, severity, subject_type, subject_id, message, occurrences, first_seen, last_seen, status,
        acknowledged_at, acknowledged_by, resolved_at, resolved_by
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

        public Response ToResponse() => new(Id, Kind, Severity, SubjectType, SubjectId, Message, Occurrences, FirstSeen, LastSeen,
            Status, AcknowledgedAt, AcknowledgedBy, ResolvedAt, ResolvedBy);
    }
}
