using Dapper;
using Integrations.Common;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using Integrations.Pipeline.Governance;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.Evidence;

/// <summary>
/// evidence.get: the output one governed call kept as evidence (a tool call or a query), by the call's invocation id.
/// Scope <c>admin</c>: evidence holds what came back from the tenant's systems, redacted but not summarised.
/// </summary>
public static class GetEvidence
{
    public sealed record Query(Guid CallId) : IOperation<CallEvidence.Response>
    {
        public static string Operation => "evidence.get";
        public static string Scope => Scopes.Admin;
    }

    internal sealed class Handler(TenantSession session) : IRequestHandler<Query, Result<CallEvidence.Response>>
    {
        public async Task<Result<CallEvidence.Response>> Handle(Query request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            return await CallEvidence.FindAsync(connection, session.TenantId, request.CallId, ct) is { } evidence
                ? evidence
                : Error.NotFound("evidence");
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/{callId:guid}", async (Guid callId, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(callId), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("The output a tool call or query kept as evidence (redacted, capped), by its invocation id; the hashes tie it to the call's record.")
            .Produces<CallEvidence.Response>()
            .ProducesProblem(StatusCodes.Status403Forbidden)
            .ProducesProblem(StatusCodes.Status404NotFound);
}
