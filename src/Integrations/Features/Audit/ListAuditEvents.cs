using System.Text;
using System.Text.Json;
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

namespace Integrations.Features.Audit;

public static class ListAuditEvents
{
    public sealed record Query(
        string? Action = null,
        string? SubjectType = null,
        string? SubjectId = null,
        DateTimeOffset? From = null,
        DateTimeOffset? To = null,
        int Limit = 50,
        string? Cursor = null,
        string? RunId = null) : IOperation<Page<Event>>
    {
        public static string Operation => "audit.list";
        public static string Scope => Scopes.Read;
    }

    public sealed record Event(
        long Seq, DateTimeOffset OccurredAt, string Actor, string Action, string SubjectType, string SubjectId,
        string? CorrelationId, JsonElement Details, string Hash);

    internal sealed class Validator : AbstractValidator<Query>
    {
        public Validator()
        {
            RuleFor(x => x.Limit).PageLimit();
            RuleFor(x => x.Cursor).SeqCursor();
            RuleFor(x => x.RunId).MaximumLength(200);
            RuleFor(x => x.To).GreaterThan(x => x.From).When(x => x.From is not null && x.To is not null)
                .WithMessage("'to' must be after 'from'.");
        }
    }

    internal sealed class Handler(TenantSession session) : IRequestHandler<Query, Result<Page<Event>>>
    {
        public async Task<Result<Page<Event>>> Handle(Query request, CancellationToken ct)
        {
            Cursor.TryDecode(request.Cursor, out long before);
            var sql = new StringBuilder("""
                SELECT seq, occurred_at, actor, action, subject_type, subject_id, correlation_id, details::text AS details, hash
                FROM audit_events WHERE tenant_id = @TenantId AND seq < @Before
                """);
            if (request.Action is not null) sql.Append(" AND action = @Action");
            if (request.SubjectType is not null) sql.Append(" AND subject_type = @SubjectType");
            if (request.SubjectId is not null) sql.Append(" AND subject_id = @SubjectId");
            if (request.From is not null) sql.Append(" AND occurred_at >= @From");
            if (request.To is not null) sql.Append(" AND occurred_at < @To");
            // A governed call's events carry its run among their facts.
            if (request.RunId is not null) sql.Append(" AND details->>'run_id' = @RunId");
            sql.Append(" ORDER BY seq DESC LIMIT @Take");

            var connection = await session.ConnectionAsync(ct);
            var rows = (await connection.QueryAsync<Row>(new CommandDefinition(sql.ToString(), new
            {
                session.TenantId,
                Before = before,
                request.Action,
                request.SubjectType,
                request.SubjectId,
                request.RunId,
                From = request.From?.UtcDateTime,
                To = request.To?.UtcDateTime,
                Take = request.Limit + 1,
            }, cancellationToken: ct))).AsList();

            return Paging.ToPage(rows, request.Limit, r => r.ToEvent(), r => Cursor.Encode(r.Seq));
        }
    }

    private sealed record Row(
        long Seq, DateTimeOffset OccurredAt, string Actor, string Action, string SubjectType, string SubjectId,
        string? CorrelationId, string Details, byte[] Hash)
    {
        public Event ToEvent()
        {
            using var details = JsonDocument.Parse(Details);
            return new Event(Seq, OccurredAt, Actor, Action, SubjectType,
                SubjectId, CorrelationId, details.RootElement.Clone(), Convert.ToHexStringLower(Hash));
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/", async (
                [FromQuery] string? action, [FromQuery(Name = "subject_type")] string? subjectType,
                [FromQuery(Name = "subject_id")] string? subjectId, [FromQuery] DateTimeOffset? from, [FromQuery] DateTimeOffset? to,
                [FromQuery] int? limit, [FromQuery] string? cursor, [FromQuery(Name = "run_id")] string? runId, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(action, subjectType, subjectId, from, to, limit ?? 50, cursor, runId), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("The tenant's audit trail, newest first, with filters (action, subject, time range, a governed call's run_id) and keyset pagination.")
            .Produces<Page<Event>>()
            .ProducesValidationProblem();
}
