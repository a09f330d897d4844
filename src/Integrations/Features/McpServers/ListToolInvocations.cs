using System.Text;
using Dapper;
using FluentValidation;
using Integrations.Common;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.McpServers;

public static class ListToolInvocations
{
    public static readonly string[] Outcomes = ["completed", "tool_error", "failed", "timeout", "denied"];

    public sealed record Query(
        Guid ServerId,
        string? Outcome = null,
        string? Tool = null,
        string? RunId = null,
        DateTimeOffset? From = null,
        DateTimeOffset? To = null,
        int Limit = 50,
        string? Cursor = null) : IOperation<Page<Invocation>>
    {
        public static string Operation => "mcp_servers.invocations";
        public static string Scope => Scopes.Read;
    }

    public sealed record Invocation(
        Guid Id, Guid ServerId, Guid ToolId, string ToolName, string? RunId, string Caller, string InputHash, string? OutputHash,
        string Outcome, string? DecisionReason, string? Error, double DurationMs, DateTimeOffset StartedAt, DateTimeOffset FinishedAt,
        Guid? IncidentId);

    internal sealed class Validator : AbstractValidator<Query>
    {
        public Validator()
        {
            RuleFor(x => x.Outcome).Must(o => o is null || Outcomes.Contains(o))
                .WithMessage($"Outcome must be one of: {string.Join(", ", Outcomes)}.");
            RuleFor(x => x.Tool).MaximumLength(200);
            RuleFor(x => x.RunId).MaximumLength(200);
            RuleFor(x => x.To).GreaterThan(x => x.From).When(x => x.From is not null && x.To is not null).WithMessage("'to' must be after 'from'.");
            RuleFor(x => x.Limit).PageLimit();
            RuleFor(x => x.Cursor).IdCursor();
        }
    }

    internal sealed class Handler(TenantSession session) : IRequestHandler<Query, Result<Page<Invocation>>>
    {
        public async Task<Result<Page<Invocation>>> Handle(Query request, CancellationToken ct)
        {
            if (await McpServer.FindAsync(session, request.ServerId, ct) is null) return Error.NotFound("MCP server");
            Cursor.TryDecode(request.Cursor, out Guid after);
            var sql = new StringBuilder("""
                SELECT id, server_id, tool_id, tool_name, run_id, caller, input_hash, output_hash, outcome, decision_reason, error,
                       duration_ms, started_at, finished_at, incident_id
                FROM mcp_tool_invocations WHERE tenant_id = @TenantId AND server_id = @ServerId
                """);
            if (request.Cursor is not null) sql.Append(" AND id < @After");
            if (request.Outcome is not null) sql.Append(" AND outcome = @Outcome");
            if (request.Tool is not null) sql.Append(" AND tool_name = @Tool");
            if (request.RunId is not null) sql.Append(" AND run_id = @RunId");
            if (request.From is not null) sql.Append(" AND started_at >= @From");
            if (request.To is not null) sql.Append(" AND started_at < @To");
            sql.Append(" ORDER BY id DESC LIMIT @Take");

            var connection = await session.ConnectionAsync(ct);
            var rows = (await connection.QueryAsync<Row>(new CommandDefinition(sql.ToString(), new
            {
                session.TenantId,
                request.ServerId,
                After = after,
                request.Outcome,
                request.Tool,
                request.RunId,
                From = request.From?.UtcDateTime,
                To = request.To?.UtcDateTime,
                Take = request.Limit + 1,
            }, cancellationToken: ct))).AsList();
            return Paging.ToPage(rows, request.Limit, r => r.ToInvocation(), r => Cursor.Encode(r.Id));
        }
    }

    private sealed class Row
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

        public Invocation ToInvocation() => new(Id, ServerId, ToolId, ToolName, RunId, Caller, InputHash, OutputHash, Outcome, DecisionReason,
            Error, DurationMs, StartedAt, FinishedAt, IncidentId);
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/{id:guid}/invocations", async (Guid id, [FromQuery] string? outcome, [FromQuery] string? tool,
                [FromQuery(Name = "run_id")] string? runId, [FromQuery] DateTimeOffset? from, [FromQuery] DateTimeOffset? to,
                [FromQuery] int? limit, [FromQuery] string? cursor, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(id, outcome, tool, runId, from, to, limit ?? 50, cursor), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("The server's tool invocations, newest first: filters outcome, tool, run_id and time range; keyset pagination.")
            .Produces<Page<Invocation>>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status404NotFound);
}
