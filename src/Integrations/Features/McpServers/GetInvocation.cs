using System.Text.Json;
using Dapper;
using Integrations.Common;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using Integrations.Pipeline.Governance;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.McpServers;

/// <summary>
/// invocations.get: one tool invocation by id, whatever its server, with the audit events of its call (their correlation
/// id is the invocation's) and, for a caller with scope <c>admin</c>, the output it kept as evidence.
/// </summary>
public static class GetInvocation
{
    public sealed record Query(Guid Id) : IOperation<Response>
    {
        public static string Operation => "invocations.get";
        public static string Scope => Scopes.Read;
    }

    /// <param name="Evidence">The output the call kept (<see cref="CallEvidence"/>); null when it kept none or the caller lacks scope <c>admin</c>.</param>
    public sealed record Response(ToolInvocation.Response Invocation, IReadOnlyList<CallEvent> Events, CallEvidence.Response? Evidence);

    /// <summary>An audit event of the call, in chain order.</summary>
    public sealed record CallEvent(long Seq, DateTimeOffset OccurredAt, string Actor, string Action, JsonElement Details);

    internal sealed class Handler(TenantSession session, CallerContext caller) : IRequestHandler<Query, Result<Response>>
    {
        private const string InvocationSql = $"SELECT {ToolInvocation.Columns} FROM mcp_tool_invocations WHERE tenant_id = @TenantId AND id = @Id";

        private const string EventsSql = """
            SELECT seq, occurred_at, actor, action, details::text AS details FROM audit_events
            WHERE tenant_id = @TenantId AND correlation_id = @CorrelationId ORDER BY seq
            """;

        private sealed record EventRow(long Seq, DateTimeOffset OccurredAt, string Actor, string Action, string Details);

        public async Task<Result<Response>> Handle(Query request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var row = await connection.QuerySingleOrDefaultAsync<ToolInvocation.Row>(new CommandDefinition(InvocationSql, new { session.TenantId, request.Id }, cancellationToken: ct));
            if (row is null) return Error.NotFound("invocation");
            var events = await connection.QueryAsync<EventRow>(new CommandDefinition(EventsSql,
                new { session.TenantId, CorrelationId = request.Id.ToString() }, cancellationToken: ct));
            var evidence = caller.Required.Has(Scopes.Admin) ? await CallEvidence.FindAsync(connection, session.TenantId, request.Id, ct) : null;
            return new Response(row.ToResponse(), events.Select(e =>
            {
                using var details = JsonDocument.Parse(e.Details);
                return new CallEvent(e.Seq, e.OccurredAt, e.Actor, e.Action, details.RootElement.Clone());
            }).ToList(), evidence);
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/{id:guid}", async (Guid id, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(id), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("One tool invocation by id, across servers, with the audit events of its call in order and (scope admin) its evidence.")
            .Produces<Response>()
            .ProducesProblem(StatusCodes.Status404NotFound);
}
