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

namespace Integrations.Features.Credentials;

public static class ListCredentialAccessLog
{
    public static readonly string[] Outcomes = ["allowed", "denied"];

    public sealed record Query(
        Guid? CredentialId = null,
        string? Outcome = null,
        string? AccessorType = null,
        string? AccessorId = null,
        int Limit = 50,
        string? Cursor = null) : IOperation<Page<Entry>>
    {
        public static string Operation => "credentials.access_log";
        public static string Scope => Scopes.Read;
    }

    public sealed record Entry(
        Guid Id, DateTimeOffset OccurredAt, Guid? CredentialId, string Reference, string AccessorType, string AccessorId,
        string Actor, string Operation, [OneOf(typeof(ListCredentialAccessLog), nameof(Outcomes))] string Outcome, string Reason);

    internal sealed class Validator : AbstractValidator<Query>
    {
        public Validator()
        {
            RuleFor(x => x.Outcome).Must(o => o is null || Outcomes.Contains(o)).WithMessage("Outcome must be allowed or denied.");
            RuleFor(x => x.AccessorType).MaximumLength(50);
            RuleFor(x => x.AccessorId).MaximumLength(100);
            RuleFor(x => x.Limit).PageLimit();
            RuleFor(x => x.Cursor).IdCursor();
        }
    }

    internal sealed class Handler(TenantSession session) : IRequestHandler<Query, Result<Page<Entry>>>
    {
        public async Task<Result<Page<Entry>>> Handle(Query request, CancellationToken ct)
        {
            Cursor.TryDecode(request.Cursor, out Guid after);
            var sql = new StringBuilder("""
                SELECT id, occurred_at, credential_id, reference, accessor_type, accessor_id, actor, operation, outcome, reason
                FROM credential_access_log WHERE tenant_id = @TenantId
                """);
            if (request.Cursor is not null) sql.Append(" AND id < @After");
            if (request.CredentialId is not null) sql.Append(" AND credential_id = @CredentialId");
            if (request.Outcome is not null) sql.Append(" AND outcome = @Outcome");
            if (request.AccessorType is not null) sql.Append(" AND accessor_type = @AccessorType");
            if (request.AccessorId is not null) sql.Append(" AND accessor_id = @AccessorId");
            sql.Append(" ORDER BY id DESC LIMIT @Take");

            var connection = await session.ConnectionAsync(ct);
            var rows = (await connection.QueryAsync<Row>(new CommandDefinition(sql.ToString(), new
            {
                session.TenantId,
                After = after,
                request.CredentialId,
                request.Outcome,
                request.AccessorType,
                request.AccessorId,
                Take = request.Limit + 1,
            }, cancellationToken: ct))).AsList();
            return Paging.ToPage(rows, request.Limit, r => r.ToEntry(), r => Cursor.Encode(r.Id));
        }
    }

    private sealed class Row
    {
        public Guid Id { get; init; }
        public DateTimeOffset OccurredAt { get; init; }
        public Guid? CredentialId { get; init; }
        public required string Reference { get; init; }
        public required string AccessorType { get; init; }
        public required string AccessorId { get; init; }
        public required string Actor { get; init; }
        public required string Operation { get; init; }
        public required string Outcome { get; init; }
        public required string Reason { get; init; }

        public Entry ToEntry() => new(Id, OccurredAt, CredentialId, Reference, AccessorType, AccessorId, Actor, Operation, Outcome, Reason);
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/access-log", async (
                [FromQuery(Name = "credential_id")] Guid? credentialId, [FromQuery, OneOf(typeof(ListCredentialAccessLog), nameof(Outcomes))] string? outcome,
                [FromQuery(Name = "accessor_type")] string? accessorType, [FromQuery(Name = "accessor_id")] string? accessorId,
                [FromQuery] int? limit, [FromQuery] string? cursor, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(credentialId, outcome, accessorType, accessorId, limit ?? 50, cursor), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("Every credential resolution of the tenant, allowed or denied, newest first, with keyset pagination.")
            .Produces<Page<Entry>>()
            .ProducesValidationProblem();
}
