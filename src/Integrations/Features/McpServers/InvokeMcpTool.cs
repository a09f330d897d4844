using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Text.Json;
using Dapper;
using FluentValidation;
using Integrations.Common;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Governance;
using Integrations.Infrastructure.Http;
using Integrations.Infrastructure.Mcp;
using Integrations.Infrastructure.Vault;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Logging;
using ModelContextProtocol;
using ModelContextProtocol.Protocol;
using Npgsql;
using NpgsqlTypes;

namespace Integrations.Features.McpServers;

/// <summary>
/// The governed tool call. In order: audit <c>requested</c>; policy (tool state, deny list, risk ceiling, input schema,
/// rate limits) → audit <c>denied</c> with the rule and a <c>denied</c> invocation row, or audit <c>allowed</c>; the
/// server's credential through the vault; audit <c>started</c>; <c>tools/call</c> over the pooled session with a
/// deadline, never retried once sent; audit <c>completed</c> or <c>failed</c> with one immutable invocation row and,
/// on failure, an incident. Every event of one call carries the invocation id as its correlation id. If the audit
/// trail cannot be written before the call, the call does not happen (503).
/// </summary>
public static class InvokeMcpTool
{
    public const string SubjectType = "mcp_tool";
    public const string TenantRateKey = "tenant";

    /// <summary>Trace tag: <c>cached</c> when the call was decided on this replica's copy of its rows, <c>read</c> when they were read.</summary>
    public const string AdmissionTag = "integrations.tool_call.admission";

    public sealed record Body(JsonElement? Arguments = null, string? RunId = null, int? TimeoutMs = null);

    public sealed record Command(Guid ServerId, Guid ToolId, JsonElement Arguments = default, string? RunId = null, int? TimeoutMs = null)
        : IOperation<Response>
    {
        public static string Operation => "tools.invoke";
        public static string Scope => Scopes.Invoke;
    }

    /// <summary><c>Outcome</c> is <c>completed</c> or <c>tool_error</c> here; failures answer as problems carrying the invocation id.</summary>
    public sealed record Response(
        Guid InvocationId, string Outcome, double DurationMs, JsonElement Content, JsonElement? StructuredContent, bool IsError);

    internal sealed class Validator : AbstractValidator<Command>
    {
        public Validator(McpOptions options)
        {
            RuleFor(x => x.Arguments).Must(a => a.ValueKind is JsonValueKind.Object or JsonValueKind.Undefined or JsonValueKind.Null)
                .WithMessage("Arguments must be a JSON object.");
            RuleFor(x => x.RunId).MaximumLength(200);
            RuleFor(x => x.TimeoutMs).InclusiveBetween(1, (int)options.CallTimeout.TotalMilliseconds)
                .WithMessage($"Timeout must be between 1 and {(int)options.CallTimeout.TotalMilliseconds} ms.");
        }
    }

    internal sealed class Target
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

        /// <summary>The row versions (<c>xmin</c>) of the tool and server rows this copy was read from.</summary>
        public required string ToolVersion { get; init; }
        public required string ServerVersion { get; init; }
    }

    /// <summary>
    /// The tool and server rows of recent calls, per tenant. A copy is only ever used to decide a call together with
    /// a check, in the same transaction as the decision's audit events, that both rows still have the versions the
    /// copy was read from; when they do not, the copy is dropped and the call decided on fresh rows. So no change
    /// notification is needed for correctness, and a change takes effect on the next call on every replica.
    /// </summary>
    internal sealed class TargetCache
    {
        private const int MaxEntries = 10_000;
        private readonly ConcurrentDictionary<(string Tenant, Guid Server, Guid Tool), Target> _targets = new();

        public bool TryGet(string tenantId, Guid serverId, Guid toolId, [NotNullWhen(true)] out Target? target) =>
            _targets.TryGetValue((tenantId, serverId, toolId), out target);

        public void Set(string tenantId, Target target)
        {
            if (_targets.Count >= MaxEntries) _targets.Clear();
            _targets[(tenantId, target.ServerId, target.ToolId)] = target;
        }

        public void Remove(string tenantId, Guid serverId, Guid toolId) => _targets.TryRemove((tenantId, serverId, toolId), out _);
    }

    /// <summary>What admission decided and recorded: the target, or the error to answer; whether <c>started</c> is on record too.</summary>
    private sealed record Admission(Target? Target, Error? Error, bool StartedRecorded);

    internal sealed class Handler(
        TenantSession session,
        TenantBatches batches,
        CallerContext caller,
        ToolPolicyStore policies,
        TargetCache targets,
        RateLimiter rateLimiter,
        ArgumentValidator argumentValidator,
        CredentialResolver credentials,
        McpSessions sessions,
        IncidentRecorder incidents,
        ILogger<Handler> logger) : IRequestHandler<Command, Result<Response>>
    {
        private const string TargetSql = """
            SELECT t.id AS tool_id, t.name AS tool_name, t.input_schema::text AS input_schema, t.definition_hash, t.approved_hash,
                   t.risk_level, t.enabled, t.status AS tool_status, t.rate_limit_per_minute,
                   s.id AS server_id, s.name AS server_name, s.url, s.transport, s.credential_ref, s.auth_header, s.status AS server_status,
                   t.xmin::text AS tool_version, s.xmin::text AS server_version
            FROM mcp_tools t JOIN mcp_servers s ON s.tenant_id = t.tenant_id AND s.id = t.server_id
            WHERE t.tenant_id = @TenantId AND t.id = @ToolId AND t.server_id = @ServerId AND s.deleted_at IS NULL
            """;

        /// <summary>Aborts its transaction unless the tool and server rows are still the versions a cached copy was read from.</summary>
        private const string UnchangedSql = """
            SELECT assert_unchanged(EXISTS (
                SELECT FROM mcp_tools t JOIN mcp_servers s ON s.tenant_id = t.tenant_id AND s.id = t.server_id
                WHERE t.tenant_id = $1 AND t.id = $2 AND t.server_id = $3 AND s.deleted_at IS NULL
                  AND t.xmin = $4::xid AND s.xmin = $5::xid), 'the MCP tool')
            """;

        /// <remarks>Statements of the hot path take positional parameters, so Npgsql sends them without parsing them each time.</remarks>
        private const string InvocationSql = """
            INSERT INTO mcp_tool_invocations (id, tenant_id, server_id, tool_id, tool_name, run_id, caller, input_hash, output_hash,
                outcome, decision_reason, error, duration_ms, started_at, finished_at, incident_id)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
            """;

        public async Task<Result<Response>> Handle(Command request, CancellationToken ct)
        {
            var call = new Call(request, caller.Required);
            Activity.Current?.SetTag("integrations.invocation_id", call.CorrelationId);

            // 1-2: requested, the policy decision and (when denied) the invocation row commit together before anything else;
            // when no credential is to be resolved first, started commits with them.
            Admission admitted;
            try
            {
                admitted = await AdmitAsync(call, ct);
            }
            catch (Exception e) when (e is NpgsqlException or TimeoutException)
            {
                logger.LogError(e, "The audit trail could not be written before tool call {InvocationId}; the call was not made.", call.Id);
                return Error.Unavailable("The audit trail cannot be written right now, so the tool was not called. Try again later.");
            }
            if (admitted.Error is { } refused) return WithInvocation(refused, call.Id);
            var target = admitted.Target!;

            // 3: the server's own credential, through the vault (grant checked, access logged); never the caller's key.
            McpServerAuth? auth = null;
            if (target.CredentialRef is not null)
            {
                var resolved = await credentials.ResolveAsync(new CredentialAccessor(CredentialAccessor.McpServer, target.ServerId),
                    target.CredentialRef, Command.Operation, ct);
                var header = resolved.IsSuccess ? McpServer.AuthFrom(resolved.Value, target.AuthHeader) : Result<McpServerAuth?>.Fail(resolved.Error!);
                if (!header.IsSuccess)
                {
                    await FinishAsync(call, target, "failed", header.Error!.Detail, null, ct, reason: "credential_unavailable");
                    return WithInvocation(header.Error!, call.Id);
                }
                auth = header.Value;
            }

            // 4: started is on record before the request leaves.
            if (!admitted.StartedRecorded)
            {
                try
                {
                    await AppendAsync(call, [Started(call, target)]);
                }
                catch (Exception e) when (e is NpgsqlException or TimeoutException)
                {
                    logger.LogError(e, "The audit trail could not be written before tool call {InvocationId}; the call was not made.", call.Id);
                    return Error.Unavailable("The audit trail cannot be written right now, so the tool was not called. Try again later.");
                }
            }

            var endpoint = new McpEndpoint(call.Caller.TenantId, target.ServerId, new Uri(target.Url), auth, target.Transport);
            var arguments = call.Arguments.ValueKind == JsonValueKind.Object
                ? call.Arguments.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.Clone())
                : new Dictionary<string, JsonElement>();
            var result = await sessions.CallToolAsync(endpoint, target.ToolName, arguments, call.Timeout, ct);

            // 5: the outcome, its invocation row and (on failure) its incident, in one commit.
            if (!result.IsSuccess)
            {
                var outcome = result.Error!.Code == "upstream_timeout" ? "timeout" : "failed";
                await FinishAsync(call, target, outcome, result.Error.Detail, null, CancellationToken.None);
                return WithInvocation(result.Error, call.Id);
            }
            var toolResult = result.Value;
            var payload = JsonSerializer.SerializeToElement(toolResult, McpJsonUtilities.DefaultOptions);
            var isError = toolResult.IsError == true;
            var duration = await FinishAsync(call, target, isError ? "tool_error" : "completed", isError ? FirstText(toolResult) : null,
                CanonicalJson.Sha256(payload), CancellationToken.None);
            return new Response(call.Id, isError ? "tool_error" : "completed", duration,
                payload.TryGetProperty("content", out var content) ? content.Clone() : JsonDocument.Parse("[]").RootElement.Clone(),
                payload.TryGetProperty("structuredContent", out var structured) ? structured.Clone() : null,
                isError);
        }

        /// <summary>
        /// The fast way when this replica holds the tool and server rows and the tenant's policy, and no rate limit has to be
        /// counted: decide in memory, then record the decision in one round trip that is its own transaction and first
        /// checks the rows are still what was decided on. Otherwise (or when they changed) the rows are read in a
        /// transaction that then records the decision.
        /// </summary>
        private async Task<Admission> AdmitAsync(Call call, CancellationToken ct)
        {
            var tenantId = call.Caller.TenantId;
            if (targets.TryGet(tenantId, call.Request.ServerId, call.Request.ToolId, out var cached) && policies.TryGetCached(tenantId, out var policy))
            {
                var (denial, rule) = await CheckRulesAsync(call, cached, policy);
                if (denial is not null || !HasRateLimits(cached, policy))
                {
                    try
                    {
                        var (admission, audit) = Decide(call, cached, denial, rule);
                        await batches.WriteAsync(tenantId, audit, batch =>
                        {
                            var unchanged = new NpgsqlBatchCommand(UnchangedSql);
                            AddPositional(unchanged, tenantId, cached.ToolId, cached.ServerId, cached.ToolVersion, cached.ServerVersion);
                            batch.BatchCommands.Add(unchanged);
                            if (denial is not null) AddDenied(batch, call, cached, denial, rule);
                        });
                        Activity.Current?.SetTag(AdmissionTag, "cached");
                        return admission;
                    }
                    catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.SerializationFailure)
                    {
                        targets.Remove(tenantId, cached.ServerId, cached.ToolId); // changed since it was read: decide on the rows as they are
                    }
                }
            }
            return await AdmitInTransactionAsync(call, ct);
        }

        private async Task<Admission> AdmitInTransactionAsync(Call call, CancellationToken ct)
        {
            Activity.Current?.SetTag(AdmissionTag, "read");
            var connection = await session.ConnectionAsync(ct);
            var target = await connection.QuerySingleOrDefaultAsync<Target>(new CommandDefinition(TargetSql,
                new { call.Caller.TenantId, call.Request.ToolId, call.Request.ServerId }, cancellationToken: ct));
            if (target is null)
            {
                await AuditTrail.WriteAsync(connection, call.Caller, [Requested(call, null),
                    new AuditEvent("tool.invocation.denied", SubjectType, call.Request.ToolId.ToString(), new { InvocationId = call.Id, Rule = "not_found" })],
                    ct, call.CorrelationId);
                await session.CommitAsync(ct);
                return new Admission(null, Error.NotFound("MCP tool"), false);
            }
            targets.Set(call.Caller.TenantId, target);

            var policy = await policies.GetAsync(connection, call.Caller.TenantId, ct);
            var (denial, rule) = await CheckRulesAsync(call, target, policy);
            if (denial is null) (denial, rule) = await CheckRateLimitsAsync(connection, call, target, policy, ct);

            var (admission, audit) = Decide(call, target, denial, rule);
            await using (var batch = new NpgsqlBatch(connection))
            {
                AuditTrail.AddTo(batch, call.Caller.TenantId, [audit]);
                if (denial is not null) AddDenied(batch, call, target, denial, rule);
                await batch.ExecuteNonQueryAsync(ct);
                await session.CommitAsync(ct);
                return admission;
            }
        }

        /// <summary>
        /// The decision and its audit events: requested, then allowed (and started, when no credential has to be resolved
        /// before the call) or denied with its rule. A denied call also gets its invocation row (<see cref="AddDenied"/>),
        /// committed with these events.
        /// </summary>
        private static (Admission Admission, AuditWrite Audit) Decide(Call call, Target target, Error? denial, string? rule)
        {
            if (denial is null)
            {
                var startsNow = target.CredentialRef is null;
                List<AuditEvent> events = [Requested(call, target), Event(call, target, "tool.invocation.allowed", new { target.RiskLevel })];
                if (startsNow) events.Add(Started(call, target));
                return (new Admission(target, null, startsNow), new AuditWrite(call.Caller, events, call.CorrelationId));
            }
            return (new Admission(null, WithExtension(denial, "rule", rule), false), new AuditWrite(call.Caller,
                [Requested(call, target), Event(call, target, "tool.invocation.denied", new { Rule = rule, Reason = denial.Detail })], call.CorrelationId));
        }

        private static void AddDenied(NpgsqlBatch batch, Call call, Target target, Error denial, string? rule) =>
            AddInvocation(batch, call, target, "denied", denial.Detail, null, null, rule, call.Elapsed);

        private static bool HasRateLimits(Target target, ToolPolicy policy) =>
            (target.RateLimitPerMinute ?? policy.DefaultRateLimitPerMinute) is not null || policy.TenantRateLimitPerMinute is not null;

        /// <summary>The first rule short of the rate limits that refuses the call, or (null, null) when every one allows it.</summary>
        private async Task<(Error? Denial, string? Rule)> CheckRulesAsync(Call call, Target target, ToolPolicy policy)
        {
            if (target.ServerStatus == "disabled")
            {
                return Deny("server_disabled", $"The MCP server '{target.ServerName}' is disabled.");
            }
            if (target.ToolStatus == McpTool.Removed)
            {
                return Deny("tool_removed", $"The tool '{target.ToolName}' is no longer offered by its server.");
            }
            if (target.ToolStatus == McpTool.Drifted || target.DefinitionHash != target.ApprovedHash)
            {
                return Deny("tool_drifted", $"The definition of '{target.ToolName}' changed since it was approved; approve it again before calling it.");
            }
            if (!target.Enabled)
            {
                return Deny("tool_disabled", $"The tool '{target.ToolName}' is disabled.");
            }

            var decision = policy.Evaluate(target.ServerName, target.ServerId, target.ToolName, target.RiskLevel);
            if (!decision.Allowed) return Deny(decision.Rule!, decision.Reason!);

            var schemaErrors = await argumentValidator.ValidateAsync(target.DefinitionHash, target.InputSchema, call.ArgumentsJson);
            if (schemaErrors.Count > 0)
            {
                return (Error.Validation(schemaErrors, $"The arguments do not match the input schema of '{target.ToolName}'."), "input_schema");
            }
            return (null, null);

            static (Error?, string?) Deny(string rule, string detail) => (Error.PolicyDenied(rule, detail), rule);
        }

        /// <summary>Counts the call against the tool's and the tenant's per-minute limits, in the admitting transaction.</summary>
        private async Task<(Error? Denial, string? Rule)> CheckRateLimitsAsync(NpgsqlConnection connection, Call call, Target target, ToolPolicy policy, CancellationToken ct)
        {
            var toolLimit = target.RateLimitPerMinute ?? policy.DefaultRateLimitPerMinute;
            if (toolLimit is { } perTool)
            {
                var counted = await rateLimiter.AcquireAsync(connection, call.Caller.TenantId, $"tool:{target.ToolId}", perTool, ct);
                if (!counted.Allowed)
                {
                    return (Error.RateLimited(counted.RetryAfter, $"The tool '{target.ToolName}' allows {perTool} calls per minute."), "tool_rate_limit");
                }
            }
            if (policy.TenantRateLimitPerMinute is { } perTenant)
            {
                var counted = await rateLimiter.AcquireAsync(connection, call.Caller.TenantId, TenantRateKey, perTenant, ct);
                if (!counted.Allowed)
                {
                    return (Error.RateLimited(counted.RetryAfter, $"The tenant allows {perTenant} governed calls per minute."), "tenant_rate_limit");
                }
            }
            return (null, null);
        }

        /// <summary>
        /// The outcome event and the invocation row, committed together. A failure that opens or bumps an incident does so in a
        /// transaction (the row and the event name it); any other outcome is one round trip that is its own transaction.
        /// </summary>
        private async Task<double> FinishAsync(
            Call call, Target target, string outcome, string? error, string? outputHash, CancellationToken ct, string? reason = null)
        {
            var duration = call.Elapsed;
            var failed = outcome is "failed" or "timeout";
            if (!failed || reason is not null)
            {
                await batches.WriteAsync(call.Caller.TenantId, Outcome(call, target, outcome, error, outputHash, null, duration),
                    batch => AddInvocation(batch, call, target, outcome, error, outputHash, null, reason, duration));
                return duration;
            }

            var transaction = await session.ConnectionAsync(ct);
            var incident = await incidents.OpenOrBumpAsync(transaction, call.Caller.TenantId, new IncidentReport(
                "tool_failure", outcome == "timeout" ? "medium" : "high", SubjectType, target.ToolId.ToString(),
                $"tool_failure:{target.ServerId}/{target.ToolName}", $"{target.ServerName}/{target.ToolName}: {error}"), ct);
            await using (var batch = new NpgsqlBatch(transaction))
            {
                AuditTrail.AddTo(batch, call.Caller.TenantId, [Outcome(call, target, outcome, error, outputHash, incident.Id, duration)]);
                AddInvocation(batch, call, target, outcome, error, outputHash, incident.Id, reason, duration);
                await batch.ExecuteNonQueryAsync(ct);
            }
            await session.CommitAsync(ct);
            return duration;
        }

        /// <summary>The outcome event: <c>completed</c> (also for a tool's own error) or <c>failed</c>.</summary>
        private static AuditWrite Outcome(Call call, Target target, string outcome, string? error, string? outputHash, Guid? incidentId, double duration)
        {
            var failed = outcome is "failed" or "timeout";
            return new AuditWrite(call.Caller, [Event(call, target, failed ? "tool.invocation.failed" : "tool.invocation.completed", new
            {
                Outcome = outcome, DurationMs = duration, OutputHash = outputHash, Error = error, IncidentId = incidentId,
            })], call.CorrelationId);
        }

        private static void AddInvocation(NpgsqlBatch batch, Call call, Target target, string outcome, string? error,
            string? outputHash, Guid? incidentId, string? reason, double durationMs)
        {
            var insert = new NpgsqlBatchCommand(InvocationSql);
            AddPositional(insert, call.Id, call.Caller.TenantId, target.ServerId, target.ToolId, target.ToolName,
                Text(call.Request.RunId), call.Caller.Actor, call.InputHash, Text(outputHash), outcome, Text(reason),
                Text(error is { Length: > 2000 } ? error[..2000] : error), durationMs, call.StartedAt, DateTime.UtcNow,
                incidentId is { } incident ? incident : new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Uuid, Value = DBNull.Value });
            batch.BatchCommands.Add(insert);
        }

        /// <summary>Adds <c>$1</c>, <c>$2</c>, ... in order; a value that is already a parameter is added as it is.</summary>
        private static void AddPositional(NpgsqlBatchCommand command, params object[] values)
        {
            foreach (var value in values) command.Parameters.Add(value as NpgsqlParameter ?? new NpgsqlParameter { Value = value });
        }

        private static NpgsqlParameter Text(string? value) => new() { NpgsqlDbType = NpgsqlDbType.Text, Value = (object?)value ?? DBNull.Value };

        /// <summary>Appends events in a transaction of their own (see <see cref="TenantBatches"/>).</summary>
        private Task AppendAsync(Call call, IReadOnlyList<AuditEvent> events) =>
            batches.WriteAsync(call.Caller.TenantId, new AuditWrite(call.Caller, events, call.CorrelationId));

        private static AuditEvent Requested(Call call, Target? target) =>
            new("tool.invocation.requested", SubjectType, call.Request.ToolId.ToString(), new
            {
                InvocationId = call.Id, call.Request.ServerId, ToolName = target?.ToolName, call.Request.RunId, call.InputHash,
            });

        private static AuditEvent Started(Call call, Target target) =>
            Event(call, target, "tool.invocation.started", new { Timeout = call.Timeout?.TotalMilliseconds });

        private static AuditEvent Event(Call call, Target target, string action, object details) =>
            new(action, SubjectType, target.ToolId.ToString(), new { InvocationId = call.Id, target.ServerId, target.ToolName, Details = details });

        private static string? FirstText(CallToolResult result) =>
            result.Content.OfType<TextContentBlock>().FirstOrDefault()?.Text is { } text ? (text.Length > 500 ? text[..500] : text) : "The tool reported an error.";

        private static Error WithInvocation(Error error, Guid invocationId) => WithExtension(error, "invocation_id", invocationId);

        private static Error WithExtension(Error error, string key, object? value) => error with
        {
            Extensions = new Dictionary<string, object?>(error.Extensions ?? new Dictionary<string, object?>()) { [key] = value },
        };
    }

    /// <summary>One call's identity and timing: its id doubles as the correlation id of all its audit events.</summary>
    private sealed class Call(Command request, Caller caller)
    {
        private readonly long _started = Stopwatch.GetTimestamp();

        public Guid Id { get; } = Ids.New();
        public Command Request { get; } = request;
        public Caller Caller { get; } = caller;
        public DateTime StartedAt { get; } = DateTime.UtcNow;
        public JsonElement Arguments => Request.Arguments;
        public string ArgumentsJson => Request.Arguments.ValueKind == JsonValueKind.Object ? Request.Arguments.GetRawText() : "{}";
        public string InputHash { get; } = CanonicalJson.Sha256(
            request.Arguments.ValueKind == JsonValueKind.Object ? request.Arguments : JsonDocument.Parse("{}").RootElement);
        public TimeSpan? Timeout => Request.TimeoutMs is { } ms ? TimeSpan.FromMilliseconds(ms) : null;
        public string CorrelationId => Id.ToString();
        public double Elapsed => Math.Round(Stopwatch.GetElapsedTime(_started).TotalMilliseconds, 3);
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPost("/{id:guid}/tools/{toolId:guid}/invoke", async (Guid id, Guid toolId, Body body, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id, toolId, body.Arguments ?? default, body.RunId, body.TimeoutMs), http.RequestAborted)).ToHttp(http))
            .WithName(Command.Operation)
            .WithSummary("Call a tool under governance: policy, rate limits, input schema, the server's credential from the vault, audit, incidents.")
            .Produces<Response>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status403Forbidden)
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status429TooManyRequests)
            .ProducesProblem(StatusCodes.Status502BadGateway)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .ProducesProblem(StatusCodes.Status504GatewayTimeout);
}
