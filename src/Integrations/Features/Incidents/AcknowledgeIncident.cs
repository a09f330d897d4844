using Integrations.Common;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.Incidents;

public static class AcknowledgeIncident
{
    public sealed record Command(Guid Id) : IOperation<Incident.Response>, IAudited
    {
        public static string Operation => "incidents.acknowledge";
        public static string Scope => Scopes.Write;
    }

    internal sealed class Handler(TenantSession session, AuditTrail audit, CallerContext caller) : IRequestHandler<Command, Result<Incident.Response>>
    {
        public Task<Result<Incident.Response>> Handle(Command request, CancellationToken ct) =>
            Incident.MoveAsync(session, audit, caller, Incident.Acknowledging, request.Id, ct);
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPost("/{id:guid}/acknowledge", async (Guid id, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id), http.RequestAborted)).ToHttp(http))
            .WithName(Command.Operation)
            .WithSummary("Mark an incident acknowledged.")
            .Produces<Incident.Response>()
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status409Conflict);
}
