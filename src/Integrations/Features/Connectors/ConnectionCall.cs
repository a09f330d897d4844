using System.Text.Json;
using Dapper;
using Integrations.Common;
using Integrations.Features.Connectors.Adapters;
using Integrations.Features.Incidents;
using Integrations.Features.Policies;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Vault;
using Integrations.Pipeline.Governance;
using Npgsql;

namespace Integrations.Features.Connectors;

/// <summary>
/// <c>connections.invoke</c> as a kind of governed call: the target is one action of a live connection with the
/// connector's manifest; the rules are the connection's state (disabled), the action's (disabled on the connection),
/// the manifest's (a registered manifest that drifted), the action's risk under the tenant's policy (the connection is
/// the scope, as a server is for its tools), the arguments against the action's input schema, and the per-minute limit
/// (the connection's own, else the policy's default). The credential is the connection's, from the vault, and must be
/// of a type the manifest accepts. Each call leaves one immutable row in <c>connection_invocations</c>; a failure opens
/// or bumps a <c>connector_failure</c> incident for the action.
/// </summary>
public sealed class ConnectionCall(ArgumentValidator argumentValidator, ConnectorCatalog catalog, ConnectorAdapters adapters)
    : GovernedCallKind<InvokeConnection.Command, ConnectionCall.Target, InvokeConnection.Response>
{
    public const string ActionSubjectType = "connection_action";

    public sealed class Target : IGovernedTarget
    {
        public required Connection.Row Connection { get; init; }
        public required ConnectorManifest Manifest { get; init; }
        public required ConnectorAction Action { get; init; }
        public bool ManifestDrifted { get; init; }

        public ConnectionEndpoint Endpoint(string tenantId) => new(Connection.Id, tenantId, Connection.Name, Connection.ConfigurationJson());
        public string SubjectId => $"{Connection.Id}/{Action.Name}";
        public CredentialAccessor CredentialAccessor => Connectors.Connection.AccessorOf(Connection.Id);
        public string? CredentialRef => Connection.CredentialRef;
    }

    private const string TargetSql = $"SELECT {Connectors.Connection.Columns} FROM connections WHERE tenant_id = @TenantId AND id = @Id AND deleted_at IS NULL";

    private const string InvocationSql = """
        INSERT INTO connection_invocations (id, tenant_id, connection_id, connection_name, action, access, run_id, caller, input_hash, output_hash,
            outcome, decision_reason, error_code, error, duration_ms, started_at, finished_at, incident_id)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
        """;

    public override string EventPrefix => "connection.invocation";
    public override string SubjectType => ActionSubjectType;
    public override string TargetName => "connection action";

    public override string SubjectOf(InvokeConnection.Command request) => $"{request.ConnectionId}/{request.Action}";

    public override async Task<Target?> FindAsync(NpgsqlConnection connection, string tenantId, InvokeConnection.Command request, CancellationToken ct)
    {
        var row = await connection.QuerySingleOrDefaultAsync<Connection.Row>(new CommandDefinition(TargetSql,
            new { TenantId = tenantId, Id = request.ConnectionId }, cancellationToken: ct));
        if (row is null) return null;
        if (await catalog.FindAsync(connection, tenantId, row.Connector, ct) is not { } found) return null;
        return found.Manifest.Action(request.Action) is { } action
            ? new Target { Connection = row, Manifest = found.Manifest, Action = action, ManifestDrifted = found.Drifted }
            : null;
    }

    public override CallDenial? CheckState(Target target)
    {
        if (target.Connection.Status == Connection.Disabled)
        {
            return CallDenial.Policy("connection_disabled", $"The connection '{target.Connection.Name}' is disabled.");
        }
        if (target.ManifestDrifted)
        {
            return CallDenial.Policy("connector_drifted",
                $"The manifest of '{target.Manifest.Name}' changed since it was approved; approve it again (POST /connectors/{target.Manifest.Name}/approve) before calling its actions.");
        }
        return target.Connection.DisabledActions.Contains(target.Action.Name)
            ? CallDenial.Policy("action_disabled", $"The action '{target.Action.Name}' is disabled on the connection '{target.Connection.Name}'.")
            : null;
    }

    public override PolicySubject PolicySubjectOf(Target target) =>
        new(target.Connection.Name, target.Connection.Id, target.Action.Name, target.Action.RiskLevel);

    public override async ValueTask<CallDenial?> CheckInputAsync(InvokeConnection.Command request, Target target)
    {
        var errors = await argumentValidator.ValidateAsync($"{target.Manifest.Hash}/{target.Action.Name}", target.Action.InputSchema.GetRawText(), request.ArgumentsJson);
        if (errors.Count > 0)
        {
            return new CallDenial("input_schema", Error.Validation(errors, $"The arguments do not match the input schema of '{target.Action.Name}'."));
        }
        var arguments = request.Arguments.ValueKind == JsonValueKind.Object ? request.Arguments : JsonDocument.Parse("{}").RootElement;
        return adapters.For(target.Manifest.Connector).CheckArguments(target.Endpoint(string.Empty), target.Action, arguments) is { } refused
            ? new CallDenial(target.Action.Request is null ? "input_arguments" : "input_template", refused)
            : null;
    }

    public override TargetRateLimit? RateLimitOf(Target target, ToolPolicy policy) =>
        (target.Connection.RateLimitPerMinute ?? policy.DefaultRateLimitPerMinute) is { } perMinute
            ? new TargetRateLimit($"connection:{target.Connection.Id}", perMinute, "connection_rate_limit",
                $"The connection '{target.Connection.Name}' allows {perMinute} calls per minute.")
            : null;

    public override Error? CheckCredential(Target target, ResolvedCredential credential)
    {
        var type = credential.Type == CredentialTypes.Opaque ? CredentialTypes.ApiKey : credential.Type;
        return target.Manifest.CredentialTypes.Contains(type)
            ? null
            : CredentialErrors.Denied($"The connector '{target.Manifest.Name}' accepts {string.Join(", ", target.Manifest.CredentialTypes)} credentials, not {credential.Type}.");
    }

    public override void AddFacts(InvokeConnection.Command request, Target? target, IDictionary<string, object?> facts)
    {
        facts["connection_id"] = request.ConnectionId;
        facts["connection_name"] = target?.Connection.Name;
        facts["connector"] = target?.Manifest.Name;
        facts["action"] = request.Action;
        facts["access"] = target?.Action.Access;
        facts["run_id"] = request.RunId;
        facts["input_hash"] = request.InputHash;
    }

    public override void AddRecord(NpgsqlBatch batch, CallRecord<InvokeConnection.Command, Target> record) =>
        batch.BatchCommands.Add(PositionalCommand.Of(InvocationSql, record.Call.Id, record.Call.Caller.TenantId, record.Target.Connection.Id,
            record.Target.Connection.Name, record.Target.Action.Name, record.Target.Action.Access, PositionalCommand.Text(record.Request.RunId),
            record.Call.Caller.Actor, record.Request.InputHash, PositionalCommand.Text(record.OutputHash), record.Outcome,
            PositionalCommand.Text(record.Reason), PositionalCommand.Text(record.ErrorCode),
            PositionalCommand.Text(record.Error is { Length: > 2000 } e ? e[..2000] : record.Error),
            record.DurationMs, record.Call.StartedAt, DateTime.UtcNow, PositionalCommand.Uuid(record.IncidentId)));

    public override IncidentReport? IncidentFor(CallRecord<InvokeConnection.Command, Target> record) => new(
        Incident.ConnectorFailure, record.Outcome == CallOutcomes.Timeout ? "medium" : "high", ActionSubjectType, record.Target.SubjectId,
        $"connection_failure:{record.Target.Connection.Id}/{record.Target.Action.Name}",
        $"{record.Target.Connection.Name}/{record.Target.Action.Name}: {record.Error}");
}
