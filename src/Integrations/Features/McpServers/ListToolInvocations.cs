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

/// <summary>
/// Tool invocations, newest first with filters: one server's (<c>GET /integrations/mcp-servers/{id}/invocations</c>) or the
/// tenant's across servers (<c>GET /invocations</c>, optionally <c>server_id</c>).
/// </summary>
public static class ListToolInvocations
{
    public sealed record Query(
        Guid? ServerId,
        string? Outcome = null,
        string? Tool = null,
        string? RunId = null,
        DateTimeOffset? From = null,
        DateTimeOffset? To = null,
        int Limit = 50,
        string? Cursor = null) : IOperation<Page<ToolInvocation.Response>>
    {
        public static string Operation => "mcp_servers.invocations";
        public static string Scope => Scopes.Read;
    }

    /// <summary>The tenant-wide route's operation id (the request is the same query).</summary>
    public const string TenantWideOperation = "invocations.list";

    internal sealed class Validator : AbstractValidator<Query>
    {
        public Validator()
        {
            RuleFor(x => x.Outcome).Must(o => o is null || ToolInvocation.Outcomes.Contains(o))
                .WithMessage($"Outcome must be one of: {string.Join(", ", ToolInvocation.Outcomes)}.");
            RuleFor(x => x.Tool).MaximumLength(200);
            RuleFor(x => x.RunId).MaximumLength(200);
            RuleFor(x => x.To).GreaterThan(x => x.From).When(x => x.From is not null && x.To is not null).WithMessage("'to' must be after 'from'.");
            RuleFor(x => x.Limit).PageLimit();
            RuleFor(x => x.Cursor).IdCursor();
        }
    }

    internal sealed class Handler(TenantSession session) : IRequestHandler<Query, Result<Page<ToolInvocation.Response>>>
    {
        public async Task<Result<Page<ToolInvocation.Response>>> Handle(Query request, CancellationToken ct)
        {
            if (request.ServerId is { } serverId && await McpServer.FindAsync(session, serverId, ct) is null) return Error.NotFound("MCP server");
            Cursor.TryDecode(request.Cursor, out Guid after);
            var sql = new StringBuilder($"SELECT {ToolInvocation.Columns} FROM mcp_tool_invocations WHERE tenant_id = @TenantId");
            if (request.ServerId is not null) sql.Append(" AND server_id = @ServerId");
            if (request.Cursor is not null) sql.Append(" AND id < @After");
            if (request.Outcome is not null) sql.Append(" AND outcome = @Outcome");
            if (request.Tool is not null) sql.Append(" AND tool_name = @Tool");
            if (request.RunId is not null) sql.Append(" AND run_id = @RunId");
            if (request.From is not null) sql.Append(" AND started_at >= @From");
            if (request.To is not null) sql.Append(" AND started_at < @To");
            sql.Append(" ORDER BY id DESC LIMIT @Take");

            var connection = await session.ConnectionAsync(ct);
            var rows = (await connection.QueryAsync<ToolInvocation.Row>(new CommandDefinition(sql.ToString(), new
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
            return Paging.ToPage(rows, request.Limit, r => r.ToResponse(), r => Cursor.Encode(r.Id));
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/{id:guid}/invocations", async (Guid id,
                [FromQuery, OneOf(typeof(ToolInvocation), nameof(ToolInvocation.Outcomes))] string? outcome, [FromQuery] string? tool,
                [FromQuery(Name = "run_id")] string? runId, [FromQuery] DateTimeOffset? from, [FromQuery] DateTimeOffset? to,
                [FromQuery] int? limit, [FromQuery] string? cursor, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(id, outcome, tool, runId, from, to, limit ?? 50, cursor), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("The server's tool invocations, newest first: filters outcome, tool, run_id and time range; keyset pagination.")
            .Produces<Page<ToolInvocation.Response>>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status404NotFound);

    internal static void MapTenantWide(RouteGroupBuilder group) =>
        group.MapGet("/", async ([FromQuery(Name = "server_id")] Guid? serverId,
                [FromQuery, OneOf(typeof(ToolInvocation), nameof(ToolInvocation.Outcomes))] string? outcome, [FromQuery] string? tool,
                [FromQuery(Name = "run_id")] string? runId, [FromQuery] DateTimeOffset? from, [FromQuery] DateTimeOffset? to,
                [FromQuery] int? limit, [FromQuery] string? cursor, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(serverId, outcome, tool, runId, from, to, limit ?? 50, cursor), http.RequestAborted)).ToHttp(http))
            .WithName(TenantWideOperation)
            .WithSummary("The tenant's tool invocations across servers, newest first: filters server_id, outcome, tool, run_id and time range; keyset pagination.")
            .Produces<Page<ToolInvocation.Response>>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status404NotFound);
}
