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

namespace Integrations.Features.Notifications;

/// <summary>notifications.deliveries: every attempt to notify a connection of an incident's state change, newest first, with its outcome and the governed call's id.</summary>
public static class ListNotificationDeliveries
{
    public static readonly string[] Outcomes = ["sending", "delivered", "failed"];

    public sealed record Query(Guid? IncidentId = null, int Limit = 50, string? Cursor = null) : IOperation<Page<Response>>
    {
        public static string Operation => "notifications.deliveries";
        public static string Scope => Scopes.Read;
    }

    public sealed record Response(
        Guid Id, Guid IncidentId, string StateChange, Guid ConnectionId, [OneOf(typeof(ListNotificationDeliveries), nameof(Outcomes))] string Outcome,
        string? ErrorCode, string? Error, Guid? InvocationId, DateTimeOffset AttemptedAt, DateTimeOffset? FinishedAt);

    internal sealed class Validator : AbstractValidator<Query>
    {
        public Validator()
        {
            RuleFor(x => x.Limit).PageLimit();
            RuleFor(x => x.Cursor).IdCursor();
        }
    }

    internal sealed class Handler(TenantSession session) : IRequestHandler<Query, Result<Page<Response>>>
    {
        private const string Sql = """
            SELECT id, incident_id, state_change, connection_id, outcome, error_code, error, invocation_id, attempted_at, finished_at
            FROM notification_deliveries
            WHERE tenant_id = @TenantId AND (@IncidentId::uuid IS NULL OR incident_id = @IncidentId) AND (@First OR id < @After)
            ORDER BY id DESC LIMIT @Take
            """;

        public async Task<Result<Page<Response>>> Handle(Query request, CancellationToken ct)
        {
            Cursor.TryDecode(request.Cursor, out Guid after);
            var connection = await session.ConnectionAsync(ct);
            var rows = (await connection.QueryAsync<Response>(new CommandDefinition(Sql, new
            {
                session.TenantId,
                request.IncidentId,
                First = request.Cursor is null,
                After = after,
                Take = request.Limit + 1,
            }, cancellationToken: ct))).AsList();
            return Paging.ToPage(rows, request.Limit, r => r, r => Cursor.Encode(r.Id));
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/deliveries", async ([FromQuery(Name = "incident_id")] Guid? incidentId, [FromQuery] int? limit, [FromQuery] string? cursor, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(incidentId, limit ?? 50, cursor), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("Incident notification attempts, newest first: which state change went to which connection, and how it ended.")
            .Produces<Page<Response>>()
            .ProducesValidationProblem();
}
