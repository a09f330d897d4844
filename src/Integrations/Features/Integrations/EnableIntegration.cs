using Integrations.Common;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.Integrations;

public static class EnableIntegration
{
    public sealed record Command(Guid Id) : IOperation<Integration.Response>, IAudited
    {
        public static string Operation => "integrations.enable";
        public static string Scope => Scopes.Write;
    }

    internal sealed class Handler(TenantSession session, AuditTrail audit) : IRequestHandler<Command, Result<Integration.Response>>
    {
        public Task<Result<Integration.Response>> Handle(Command request, CancellationToken ct) =>
            Integration.MoveAsync(session, audit, Integration.Enabling, request.Id, ct);
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPost("/{id:guid}/enable", async (Guid id, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id), http.RequestAborted)).ToHttp(http))
            .WithName(Command.Operation)
            .WithSummary("Enable an integration (from created, disabled or error).")
            .Produces<Integration.Response>()
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status409Conflict);
}
