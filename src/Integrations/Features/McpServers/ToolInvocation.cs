using Integrations.Common;

namespace Integrations.Features.McpServers;

/// <summary>
/// The immutable record of one tool call (<c>mcp_tool_invocations</c>), as the invocation reads (per server, tenant-wide,
/// one by id) answer it.
/// </summary>
public static class ToolInvocation
{
    public static readonly string[] Outcomes = ["completed", "tool_error", "failed", "timeout", "denied"];

    public sealed record Response(
        Guid Id, Guid ServerId, Guid ToolId, string ToolName, string? RunId, string Caller, string InputHash, string? OutputHash,
        [OneOf(typeof(ToolInvocation), nameof(Outcomes))] string Outcome, string? DecisionReason, string? Error, double DurationMs,
        DateTimeOffset StartedAt, DateTimeOffset FinishedAt, Guid? IncidentId);

    internal const string Columns = """
        id, server_id, tool_id, tool_name, run_id, caller, input_hash, output_hash, outcome, decision_reason, error,
        duration_ms, started_at, finished_at, incident_id
        """;

    internal sealed class Row
    {
        public Guid Id { get; init; }
        public Guid ServerId { get; init; }
        public Guid ToolId { get; init; }
        public required string ToolName { get; init; }
        public string? RunId { get; init; }
        public required string Caller { get; init; }
        public required string InputHash { get; init; }
        public string? OutputHash { get; init; }
        public required string Outcome { get; init; }
        public string? DecisionReason { get; init; }
        public string? Error { get; init; }
        public double DurationMs { get; init; }
        public DateTimeOffset StartedAt { get; init; }
        public DateTimeOffset FinishedAt { get; init; }
        public Guid? IncidentId { get; init; }

        public Response ToResponse() => new(Id, ServerId, ToolId, ToolName, RunId, Caller, InputHash, OutputHash, Outcome, DecisionReason,
            Error, DurationMs, StartedAt, FinishedAt, IncidentId);
    }
}
