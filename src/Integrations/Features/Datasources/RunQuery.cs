using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Dapper;
using FluentValidation;
using Integrations.Common;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Datasources;
using Integrations.Infrastructure.Governance;
using Integrations.Infrastructure.Http;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.Datasources;

/// <summary>
/// datasources.query: runs one stored template, never caller SQL. In order: audit <c>requested</c>; policy (the
/// template is enabled; the tenant's deny list; the rate limits counted in PostgreSQL); parameters bound by name
/// and type; those events commit before anything reaches the datasource (no audit, no query). Then the password
/// is resolved for the datasource, the statement runs in a READ ONLY transaction with its timeout, row cap and byte cap, and
/// <c>completed</c> or <c>failed</c> is appended with the parameters' hash, row count and duration. Our own
/// transaction is never open while the datasource works.
/// </summary>
public static class RunQuery
{
    public const string Requested = "datasource.query.requested";
    public const string Denied = "datasource.query.denied";
    public const string Completed = "datasource.query.completed";
    public const string Failed = "datasource.query.failed";

    /// <summary>Calls per minute for a template with no limit of its own and a tenant policy without a default.</summary>
    public const int FallbackRateLimitPerMinute = 60;

    /// <summary>The rate-limit key of the tenant-wide budget that every governed call (tools and queries) counts against.</summary>
    public const string TenantRateKey = "tenant";

    public sealed record Command(Guid DatasourceId, string Name, IReadOnlyDictionary<string, JsonElement>? Parameters = null)
        : IOperation<Response>
    {
        public static string Operation => "datasources.query";
        public static string Scope => Scopes.Invoke;
    }

    public sealed record Body(IReadOnlyDictionary<string, JsonElement>? Parameters = null);

    /// <summary>
    /// <c>truncated</c>: more rows were there than came back; <c>truncated_reason</c> says which cap stopped them:
    /// <c>row_limit</c> (the template's) or <c>byte_limit</c> (<c>Integrations:Datasources:MaxResultBytes</c>); null when not truncated.
    /// </summary>
    public sealed record Response(
        Guid QueryId,
        string Query,
        IReadOnlyList<ColumnInfo> Columns,
        IReadOnlyList<JsonNode?[]> Rows,
        int RowCount,
        bool Truncated,
        string? TruncatedReason,
        long DurationMs);

    internal sealed class Validator : AbstractValidator<Command>
    {
        public Validator()
        {
            RuleFor(x => x.Name).ValidQueryName();
            RuleFor(x => x.Parameters).Must(p => p is null || p.Count <= Datasource.MaxParameters)
                .WithMessage($"At most {Datasource.MaxParameters} parameters.");
        }
    }

    internal sealed class Handler(TenantSession session, CallerContext caller, SqlGateway gateway, DatasourcePasswords passwords,
        ToolPolicyStore policies, RateLimiter rateLimiter)
        : IRequestHandler<Command, Result<Response>>
    {
        private const string ReadSql = """
            SELECT q.id, q.name, q.sql, q.parameters::text AS parameters, q.row_limit, q.timeout_ms, q.rate_limit_per_minute, q.enabled,
                   d.id AS datasource_id, d.name AS datasource_name, d.host, d.port, d.database, d.username, d.credential_ref, d.tls_mode
            FROM datasource_queries q
            JOIN datasources d ON d.tenant_id = q.tenant_id AND d.id = q.datasource_id AND d.deleted_at IS NULL
            WHERE q.tenant_id = @TenantId AND q.datasource_id = @DatasourceId AND q.name = @Name AND q.deleted_at IS NULL
            """;

        public async Task<Result<Response>> Handle(Command request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var template = await connection.QuerySingleOrDefaultAsync<TemplateRow>(
                new CommandDefinition(ReadSql, new { session.TenantId, request.DatasourceId, request.Name }, cancellationToken: ct));
            if (template is null) return Error.NotFound("query template");

            var subject = template.Id.ToString();
            var parametersHash = Hash(request.Parameters);
            var facts = new Dictionary<string, object?>
            {
                ["datasource_id"] = template.DatasourceId,
                ["query"] = template.Name,
                ["parameters_sha256"] = parametersHash,
            };
            var events = new List<AuditEvent> { new(Requested, Datasource.QuerySubjectType, subject, facts) };

            var refusal = await PolicyAsync(connection, template, ct);
            var declared = Datasource.ParseParameters(template.Parameters);
            object[] values = [];
            if (refusal is not null) events.Add(new(Denied, Datasource.QuerySubjectType, subject, With(facts, refusal)));
            else if (!TryBind(declared, request.Parameters, out values, out refusal))
            {
                events.Add(new(Failed, Datasource.QuerySubjectType, subject, With(facts, refusal!)));
            }
            // Fail closed: if these events cannot be written, nothing reaches the datasource.
            await AuditTrail.WriteAsync(connection, caller.Required, events, ct);
            await session.CommitAsync(ct);
            if (refusal is not null) return refusal;

            var started = Stopwatch.GetTimestamp();
            Result<QueryRows> result;
            try
            {
                var password = await passwords.ResolveAsync(template.DatasourceId, template.CredentialRef, Command.Operation, ct);
                if (!password.IsSuccess) result = password.Error!;
                else
                {
                    var positional = new CheckedTemplate(RewriteOrThrow(template, declared), declared.Select(p => p.Name).ToList());
                    result = await gateway.RunAsync(template.Target, password.Value, positional, declared.Select(p => p.Type).ToList(),
                        values, template.RowLimit, template.TimeoutMs, ct);
                }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                await WriteOutcomeAsync(new AuditEvent(Failed, Datasource.QuerySubjectType, subject,
                    With(facts, new Error("cancelled", 499, "Cancelled.", "The caller cancelled the query."), started)));
                throw;
            }

            // No rows leave without their evidence: if this write fails, the caller gets an error, not the data.
            await WriteOutcomeAsync(result.IsSuccess
                ? new AuditEvent(Completed, Datasource.QuerySubjectType, subject, new Dictionary<string, object?>(facts)
                {
                    ["row_count"] = result.Value.Rows.Count,
                    ["truncated"] = result.Value.Truncated,
                    ["truncated_reason"] = result.Value.TruncatedReason,
                    ["duration_ms"] = Elapsed(started),
                })
                : new AuditEvent(Failed, Datasource.QuerySubjectType, subject, With(facts, result.Error!, started)));

            if (!result.IsSuccess) return result.Error!;
            return new Response(template.Id, template.Name, result.Value.Columns, result.Value.Rows, result.Value.Rows.Count,
                result.Value.Truncated, result.Value.TruncatedReason, Elapsed(started));
        }

        private async Task WriteOutcomeAsync(AuditEvent outcome)
        {
            // Written even when the caller has gone: the datasource may already have done the work.
            var connection = await session.ConnectionAsync(CancellationToken.None);
            await AuditTrail.WriteAsync(connection, caller.Required, [outcome], CancellationToken.None);
            await session.CommitAsync(CancellationToken.None);
        }

        private static long Elapsed(long started) => (long)Stopwatch.GetElapsedTime(started).TotalMilliseconds;

        /// <summary>
        /// The template must be enabled; the tenant's tool policy must not deny it (deny-list entries name a template as
        /// <c>template</c> or <c>datasource/template</c>, the datasource by name or id; a read-only query is low risk, so the
        /// risk ceiling never refuses it); and the calls must fit the template's limit per minute (its own, else the
        /// policy's default, else 60) and the tenant-wide limit when the policy sets one.
        /// </summary>
        private async Task<Error?> PolicyAsync(Npgsql.NpgsqlConnection connection, TemplateRow template, CancellationToken ct)
        {
            if (!template.Enabled)
            {
                return Error.PolicyDenied("template_disabled", $"The query template '{template.Name}' is disabled.");
            }
            var policy = await policies.GetAsync(connection, session.TenantId, ct);
            var decision = policy.Evaluate(template.DatasourceName, template.DatasourceId, template.Name, "low");
            if (!decision.Allowed) return Error.PolicyDenied(decision.Rule!, decision.Reason!);

            var limit = template.RateLimitPerMinute ?? policy.DefaultRateLimitPerMinute ?? FallbackRateLimitPerMinute;
            var window = await rateLimiter.AcquireAsync(connection, session.TenantId, $"datasource_query:{template.Id}", limit, ct);
            if (!window.Allowed)
            {
                return Error.RateLimited(window.RetryAfter,
                    $"The query template '{template.Name}' allows {limit} calls per minute for this tenant.");
            }
            if (policy.TenantRateLimitPerMinute is { } tenantLimit)
            {
                var tenantWindow = await rateLimiter.AcquireAsync(connection, session.TenantId, TenantRateKey, tenantLimit, ct);
                if (!tenantWindow.Allowed)
                {
                    return Error.RateLimited(tenantWindow.RetryAfter, $"The tenant allows {tenantLimit} governed calls per minute.");
                }
            }
            return null;
        }

        /// <summary>Every declared parameter must be given (null is SQL NULL) and nothing else; values are converted to their declared types.</summary>
        private static bool TryBind(IReadOnlyList<Datasource.Parameter> declared, IReadOnlyDictionary<string, JsonElement>? given,
            out object[] values, out Error? error)
        {
            given ??= new Dictionary<string, JsonElement>();
            values = new object[declared.Count];
            var problems = new Dictionary<string, string[]>();
            foreach (var unknown in given.Keys.Where(k => declared.All(d => d.Name != k)))
            {
                problems[$"parameters.{unknown}"] = ["The template declares no such parameter."];
            }
            for (var i = 0; i < declared.Count; i++)
            {
                if (!given.TryGetValue(declared[i].Name, out var value))
                {
                    problems[$"parameters.{declared[i].Name}"] = [$"Required ({declared[i].Type}); send null for SQL NULL."];
                }
                else if (!QueryParameterTypes.TryConvert(declared[i].Type, value, out values[i], out var message))
                {
                    problems[$"parameters.{declared[i].Name}"] = [message];
                }
            }
            error = problems.Count == 0 ? null : Error.Validation(problems);
            return error is null;
        }

        /// <summary>The stored text passed these rules when it was defined; a failure now means the rules or the row changed.</summary>
        private static string RewriteOrThrow(TemplateRow template, IReadOnlyList<Datasource.Parameter> declared)
        {
            if (SqlTemplateGuard.TryCheck(template.Sql, declared.Select(p => p.Name).ToList(), template.TimeoutMs, out var checkedTemplate, out _, out var refusal))
            {
                return checkedTemplate!.PositionalSql;
            }
            throw new InvalidOperationException($"The stored template {template.Id} no longer passes the gateway's rules: {refusal}");
        }

        private static Dictionary<string, object?> With(Dictionary<string, object?> facts, Error error, long? started = null)
        {
            var details = new Dictionary<string, object?>(facts) { ["code"] = error.Code, ["reason"] = error.Detail };
            if (error.Extensions?.TryGetValue("rule", out var rule) == true) details["rule"] = rule;
            if (error.FieldErrors is not null) details["errors"] = error.FieldErrors;
            if (started is { } start) details["duration_ms"] = Elapsed(start);
            return details;
        }

        /// <summary>SHA-256 of the parameters as canonical JSON (keys sorted): the audit trail proves what was asked without holding it.</summary>
        private static string Hash(IReadOnlyDictionary<string, JsonElement>? parameters)
        {
            var canonical = new SortedDictionary<string, JsonElement>(
                (parameters ?? new Dictionary<string, JsonElement>()).ToDictionary(p => p.Key, p => p.Value), StringComparer.Ordinal);
            return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(JsonSerializer.Serialize(canonical))));
        }
    }

    internal sealed class TemplateRow
    {
        public Guid Id { get; init; }
        public required string Name { get; init; }
        public required string Sql { get; init; }
        public required string Parameters { get; init; }
        public int RowLimit { get; init; }
        public int TimeoutMs { get; init; }
        public int? RateLimitPerMinute { get; init; }
        public bool Enabled { get; init; }
        public Guid DatasourceId { get; init; }
        public required string DatasourceName { get; init; }
        public required string Host { get; init; }
        public int Port { get; init; }
        public required string Database { get; init; }
        public required string Username { get; init; }
        public required string CredentialRef { get; init; }
        public required string TlsMode { get; init; }

        public DatasourceTarget Target => new(DatasourceId, Host, Port, Database, Username, TlsMode);
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPost("/{id:guid}/queries/{name}", async (Guid id, string name, Body? body, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id, name, body?.Parameters), http.RequestAborted)).ToHttp(http))
            .WithName(Command.Operation)
            .WithSummary("Run a query template with named, typed parameters (bound, never spliced) in a READ ONLY transaction with its timeout, row cap and byte cap.")
            .Produces<Response>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status403Forbidden)
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status429TooManyRequests)
            .ProducesProblem(StatusCodes.Status502BadGateway)
            .ProducesProblem(StatusCodes.Status504GatewayTimeout);
}
