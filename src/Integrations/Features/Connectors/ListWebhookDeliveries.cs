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

namespace Integrations.Features.Connectors;

/// <summary>
/// connections.deliveries: a webhook connection's delivery log, newest first, each delivery with its attempts (the
/// receiver's status or the error, the duration); <c>status</c> filters (<c>dead_letter</c> finds what to redeliver).
/// Redelivery is the connection's <c>redeliver</c> action, a governed call like any other
/// (<c>POST /connections/{id}/deliveries/{deliveryId}/redeliver</c>, mapped by InvokeConnection, sends it).
/// </summary>
public static class ListWebhookDeliveries
{
    public static readonly string[] Statuses = ["pending", "delivered", "failed", "dead_letter"];

    public sealed record Query(Guid ConnectionId, string? Status = null, int Limit = 50, string? Cursor = null) : IOperation<Page<Response>>
    {
        public static string Operation => "connections.deliveries";
        public static string Scope => Scopes.Read;
    }


    public sealed record Response(
        Guid Id,
        string Event,
        [OneOf(typeof(ListWebhookDeliveries), nameof(Statuses))] string Status,
        int Attempts,
        int? LastStatus,
        string? LastError,
        DateTimeOffset CreatedAt,
        DateTimeOffset? DeliveredAt,
        JsonElement Body,
        IReadOnlyList<AttemptResponse> AttemptLog);

    public sealed record AttemptResponse(int Number, int? StatusCode, string? Error, double DurationMs, DateTimeOffset AttemptedAt);

    internal sealed class Validator : AbstractValidator<Query>
    {
        public Validator()
        {
            RuleFor(x => x.Limit).PageLimit();
            RuleFor(x => x.Cursor).IdCursor();
            RuleFor(x => x.Status).Must(s => s is null || Statuses.Contains(s)).WithMessage($"Status must be one of: {string.Join(", ", Statuses)}.");
        }
    }

    private sealed class Row
    {
        public Guid Id { get; init; }
        public required string Event { get; init; }
        public required string Body { get; init; }
        public required string Status { get; init; }
        public int Attempts { get; init; }
        public int? LastStatus { get; init; }
        public string? LastError { get; init; }
        public DateTimeOffset CreatedAt { get; init; }
        public DateTimeOffset? DeliveredAt { get; init; }
    }

    private sealed class AttemptRow
    {
        public Guid DeliveryId { get; init; }
        public int Attempt { get; init; }
        public int? StatusCode { get; init; }
        public string? Error { get; init; }
        public double DurationMs { get; init; }
        public DateTimeOffset AttemptedAt { get; init; }
    }

    internal sealed class Handler(TenantSession session) : IRequestHandler<Query, Result<Page<Response>>>
    {
        private const string Sql = """
            SELECT EXISTS (SELECT FROM connections WHERE tenant_id = @TenantId AND id = @ConnectionId AND deleted_at IS NULL);
            SELECT id, event, body, status, attempts, last_status, last_error, created_at, delivered_at FROM webhook_deliveries
            WHERE tenant_id = @TenantId AND connection_id = @ConnectionId AND (@Status::text IS NULL OR status = @Status) AND (@First OR id < @After)
            ORDER BY id DESC LIMIT @Take;
            """;

        private const string AttemptsSql = """
            SELECT delivery_id, attempt, status_code, error, duration_ms, attempted_at FROM webhook_delivery_attempts
            WHERE tenant_id = @TenantId AND delivery_id = ANY(@Ids) ORDER BY delivery_id, attempt
            """;

        public async Task<Result<Page<Response>>> Handle(Query request, CancellationToken ct)
        {
            Cursor.TryDecode(request.Cursor, out Guid after);
            var connection = await session.ConnectionAsync(ct);
            List<Row> rows;
            await using (var results = await connection.QueryMultipleAsync(new CommandDefinition(Sql, new
            {
                session.TenantId,
                request.ConnectionId,
                request.Status,
                First = request.Cursor is null,
                After = after,
                Take = request.Limit + 1,
            }, cancellationToken: ct)))
            {
                if (!await results.ReadSingleAsync<bool>()) return Error.NotFound("connection");
                rows = (await results.ReadAsync<Row>()).AsList();
            }
            var attempts = (await connection.QueryAsync<AttemptRow>(new CommandDefinition(AttemptsSql,
                new { session.TenantId, Ids = rows.Select(r => r.Id).ToArray() }, cancellationToken: ct))).ToLookup(a => a.DeliveryId);
            return Paging.ToPage(rows, request.Limit, r => new Response(r.Id, r.Event, r.Status, r.Attempts, r.LastStatus, r.LastError, r.CreatedAt,
                    r.DeliveredAt, JsonDocument.Parse(r.Body).RootElement.Clone(),
                    attempts[r.Id].Select(a => new AttemptResponse(a.Attempt, a.StatusCode, a.Error, a.DurationMs, a.AttemptedAt)).ToList()),
                r => Cursor.Encode(r.Id));
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/{id:guid}/deliveries", async (Guid id, [FromQuery] string? status, [FromQuery] int? limit, [FromQuery] string? cursor, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(id, status, limit ?? 50, cursor), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("A webhook connection's delivery log with every attempt; filter by status (dead_letter: what to redeliver).")
            .Produces<Page<Response>>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status404NotFound);
}
