using FluentValidation;
using Integrations.Common;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Http;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.Audit;

public static class ListAuditAnchors
{
    public sealed record Query(int Limit = 50, string? Cursor = null) : IOperation<Page<Anchor>>
    {
        public static string Operation => "audit.anchors.list";
        public static string Scope => Scopes.Read;
    }

    /// <summary>An anchored chain head: the event <c>Seq</c> had <c>Hash</c> at <c>AnchoredAt</c>, signed under <c>KeyId</c>.</summary>
    public sealed record Anchor(long Seq, string Hash, DateTimeOffset AnchoredAt, string KeyId);

    internal sealed class Validator : AbstractValidator<Query>
    {
        public Validator()
        {
            RuleFor(x => x.Limit).PageLimit();
            RuleFor(x => x.Cursor).SeqCursor();
        }
    }

    /// <summary>The tenant's anchors whose signature holds, newest (highest sequence number) first.</summary>
    internal sealed class Handler(CallerContext caller, AuditAnchorFile anchors) : IRequestHandler<Query, Result<Page<Anchor>>>
    {
        public Task<Result<Page<Anchor>>> Handle(Query request, CancellationToken ct)
        {
            Cursor.TryDecode(request.Cursor, out long before);
            var rows = anchors.Read(caller.Required.TenantId)
                .Where(a => a.Signed && a.Anchor.Seq < before)
                .Select(a => a.Anchor)
                .OrderByDescending(a => a.Seq).ThenByDescending(a => a.AnchoredAt)
                .Take(request.Limit + 1)
                .ToList();
            return Task.FromResult<Result<Page<Anchor>>>(Paging.ToPage(rows, request.Limit,
                a => new Anchor(a.Seq, Convert.ToHexStringLower(a.Hash), new DateTimeOffset(a.AnchoredAt), a.KeyId), a => Cursor.Encode(a.Seq)));
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/anchors", async ([FromQuery] int? limit, [FromQuery] string? cursor, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(limit ?? 50, cursor), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("The tenant's anchored audit chain heads (kept outside the database), newest first, with keyset pagination.")
            .Produces<Page<Anchor>>()
            .ProducesValidationProblem();
}
