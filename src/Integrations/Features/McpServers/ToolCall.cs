using System.Text.Json;
using Dapper;
using Integrations.Common;
using Integrations.Features.Incidents;
using Integrations.Features.Policies;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Vault;
using Integrations.Pipeline.Governance;
using Npgsql;

namespace Integrations.Features.McpServers;

/// <summary>
/// <c>tools.invoke</c> as a kind of governed call: the target is the tool with its server; the rules are the server's
/// and tool's state (disabled, removed, drifted, tool disabled), the tool's risk under the tenant's policy, the
/// arguments against the pinned <c>inputSchema</c>, and the tool's per-minute limit (its own, else the policy's
/// default). Each call leaves one immutable row in <c>mcp_tool_invocations</c>; a failure opens or bumps a
/// <c>tool_failure</c> incident. Targets are cached per replica (see <see cref="GovernedTargetCache"/>).
/// </summary>
public sealed class ToolCall(ArgumentValidator argumentValidator) : GovernedCallKind<InvokeMcpTool.Command, ToolCall.Target, InvokeMcpTool.Response>
{
    /// <summary>The cache key of a tool's target.</summary>
    public readonly record struct Key(Guid ServerId, Guid ToolId);

    public sealed class Target : IGovernedTarget
    {
        public Guid ToolId { get; init; }
        public required string ToolName { get; init; }
        public required string InputSchema { get; init; }
        public required string DefinitionHash { get; init; }
        public required string ApprovedHash { get; init; }
        public required string RiskLevel { get; init; }
        public bool Enabled { get; init; }
        public required string ToolStatus { get; init; }
        public int? RateLimitPerMinute { get; init; }
        public Guid ServerId { get; init; }
        public required string ServerName { get; init; }
        public required string Url { get; init; }
        public required string Transport { get; init; }
        public string? CredentialRef { get; init; }
        public required string AuthHeader { get; init; }
        public required string ServerStatus { get; init; }
        public string? ServerEvidence { get; init; }
        public string? ToolEvidence { get; init; }

        /// <summary>The row versions (<c>xmin</c>) of the tool and server rows this copy was read from.</summary>
        public required string ToolVersion { get; init; }
        public required string ServerVersion { get; init; }

        public string SubjectId => ToolId.ToString();
        public CredentialAccessor CredentialAccessor => new(CredentialAccessor.McpServer, ServerId);

        private EvidencePolicy? _evidence;
        private bool _evidenceRead;

        /// <summary>The server's evidence policy as this tool's own choice (<c>inherit</c>, <c>on</c>, <c>off</c>) leaves it.</summary>
        public EvidencePolicy? Evidence
        {
            get
            {
                if (!_evidenceRead)
                {
                    _evidence = EvidencePolicy.Effective(ServerEvidence, ToolEvidence);
                    _evidenceRead = true;
                }
                return _evidence;
            }
        }
    }

    private const string TargetSql = """
        SELECT t.id AS tool_id, t.name AS tool_name, t.input_schema::text AS input_schema, t.definition_hash, t.approved_hash,
               t.risk_level, t.enabled, t.status AS tool_status, t.rate_limit_per_minute,
               s.id AS server_id, s.name AS server_name, s.url, s.transport, s.credential_ref, s.auth_header, s.status AS server_status,
               s.evidence::text AS server_evidence, t.evidence AS tool_evidence, t.xmin::text AS tool_version, s.xmin::text AS server_version
        FROM mcp_tools t JOIN mcp_servers s ON s.tenant_id = t.tenant_id AND s.id = t.server_id
        WHERE t.tenant_id = @TenantId AND t.id = @ToolId AND t.server_id = @ServerId AND s.deleted_at IS NULL
        """;

    /// <remarks>Statements of the hot path take positional parameters, so Npgsql sends them without parsing them each time.</remarks>
    private const string UnchangedSql = """
        SELECT assert_unchanged(EXISTS (
            SELECT FROM mcp_tools t JOIN mcp_servers s ON s.tenant_id = t.tenant_id AND s.id = t.server_id
            WHERE t.tenant_id = $1 AND t.id = $2 AND t.server_id = $3 AND s.deleted_at IS NULL
              AND t.xmin = $4::xid AND s.xmin = $5::xid), 'the MCP tool')
        """;

    private const string InvocationSql = """
        INSERT INTO mcp_tool_invocations (id, tenant_id, server_id, tool_id, tool_name, run_id, caller, input_hash, output_hash,
            outcome, decision_reason, error, duration_ms, started_at, finished_at, incident_id)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
        """;

    public override string EventPrefix => "tool.invocation";
    public override string SubjectType => McpTool.SubjectType;
    public override string TargetName => "MCP tool";

    public override string SubjectOf(InvokeMcpTool.Command request) => request.ToolId.ToString();

    public override Task<Target?> FindAsync(NpgsqlConnection connection, string tenantId, InvokeMcpTool.Command request, CancellationToken ct) =>
        connection.QuerySingleOrDefaultAsync<Target>(new CommandDefinition(TargetSql,
            new { TenantId = tenantId, request.ToolId, request.ServerId }, cancellationToken: ct));

    public override object? CacheKey(InvokeMcpTool.Command request) => new Key(request.ServerId, request.ToolId);

    public override NpgsqlBatchCommand UnchangedCheck(string tenantId, Target target) =>
        PositionalCommand.Of(UnchangedSql, tenantId, target.ToolId, target.ServerId, target.ToolVersion, target.ServerVersion);

    public override CallDenial? CheckState(Target target)
    {
        if (target.ServerStatus == McpServer.Disabled)
        {
            return CallDenial.Policy("server_disabled", $"The MCP server '{target.ServerName}' is disabled.");
        }
        if (target.ToolStatus == McpTool.Removed)
        {
            return CallDenial.Policy("tool_removed", $"The tool '{target.ToolName}' is no longer offered by its server.");
        }
        if (target.ToolStatus == McpTool.Drifted || target.DefinitionHash != target.ApprovedHash)
        {
            return CallDenial.Policy("tool_drifted", $"The definition of '{target.ToolName}' changed since it was approved; approve it again before calling it.");
        }
        return target.Enabled ? null : CallDenial.Policy("tool_disabled", $"The tool '{target.ToolName}' is disabled.");
    }

    public override PolicySubject PolicySubjectOf(Target target) => new(target.ServerName, target.ServerId, target.ToolName, target.RiskLevel);

    public override async ValueTask<CallDenial?> CheckInputAsync(InvokeMcpTool.Command request, Target target)
    {
        var errors = await argumentValidator.ValidateAsync(target.DefinitionHash, target.InputSchema, request.ArgumentsJson);
        return errors.Count == 0
            ? null
            : new CallDenial("input_schema", Error.Validation(errors, $"The arguments do not match the input schema of '{target.ToolName}'."));
    }

    public override TargetRateLimit? RateLimitOf(Target target, ToolPolicy policy) =>
        (target.RateLimitPerMinute ?? policy.DefaultRateLimitPerMinute) is { } perMinute
            ? new TargetRateLimit($"tool:{target.ToolId}", perMinute, "tool_rate_limit", $"The tool '{target.ToolName}' allows {perMinute} calls per minute.")
            : null;

    public override Error? CheckCredential(Target target, ResolvedCredential credential) =>
        McpServer.AuthFrom(credential, target.AuthHeader).Error;

    public override void AddFacts(InvokeMcpTool.Command request, Target? target, IDictionary<string, object?> facts)
    {
        facts["server_id"] = request.ServerId;
        facts["tool_name"] = target?.ToolName;
        facts["run_id"] = request.RunId;
        facts["input_hash"] = request.InputHash;
        if (request.TimeoutMs is { } timeout) facts["timeout_ms"] = timeout;
    }

    public override void AddRecord(NpgsqlBatch batch, CallRecord<InvokeMcpTool.Command, Target> record) =>
        batch.BatchCommands.Add(PositionalCommand.Of(InvocationSql, record.Call.Id, record.Call.Caller.TenantId, record.Target.ServerId,
            record.Target.ToolId, record.Target.ToolName, PositionalCommand.Text(record.Request.RunId), record.Call.Caller.Actor, record.Request.InputHash,
            PositionalCommand.Text(record.OutputHash), record.Outcome, PositionalCommand.Text(record.Reason), PositionalCommand.Text(record.Error is { Length: > 2000 } e ? e[..2000] : record.Error),
            record.DurationMs, record.Call.StartedAt, DateTime.UtcNow,
            PositionalCommand.Uuid(record.IncidentId)));

    public override IncidentReport? IncidentFor(CallRecord<InvokeMcpTool.Command, Target> record) => new(
        "tool_failure", record.Outcome == CallOutcomes.Timeout ? "medium" : "high", McpTool.SubjectType, record.Target.ToolId.ToString(),
        $"tool_failure:{record.Target.ServerId}/{record.Target.ToolName}", $"{record.Target.ServerName}/{record.Target.ToolName}: {record.Error}");
}
