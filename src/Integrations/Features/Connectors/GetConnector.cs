using Integrations.Common;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.Connectors;

/// <summary>connectors.get: one connector by name, built-in or registered by the tenant.</summary>
public static class GetConnector
{
    public sealed record Query(string Name) : IOperation<Connector.Response>
    {
        public static string Operation => "connectors.get";
        public static string Scope => Scopes.Read;
    }

    internal sealed class Handler(TenantSession session, ConnectorCatalog catalog) : IRequestHandler<Query, Result<Connector.Response>>
    {
        public async Task<Result<Connector.Response>> Handle(Query request, CancellationToken ct)
        {
            if (catalog.FindBuiltIn(request.Name) is { } builtIn) return Connector.ToResponse(builtIn);
            var registered = await ConnectorCatalog.FindRegisteredAsync(await session.ConnectionAsync(ct), session.TenantId, request.Name, ct);
            return registered is null ? Error.NotFound("connector") : Connector.ToResponse(registered);
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/{name}", async (string name, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(name), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("One connector: its manifest's configuration schema, credential types and actions, and a registered manifest's pin and state.")
            .Produces<Connector.Response>()
            .ProducesProblem(StatusCodes.Status404NotFound);
}
