using Dapper;
using Integrations.Common;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.VirtualServers;

public static class GetVirtualServer
{
    public sealed record Query(Guid Id) : IOperation<VirtualServer.Response>
    {
        public static string Operation => "virtual_servers.get";
        public static string Scope => Scopes.Read;
    }

    internal sealed class Handler(TenantSession session) : IRequestHandler<Query, Result<VirtualServer.Response>>
    {
        private const string Sql = $"SELECT {VirtualServer.Columns} FROM virtual_servers WHERE tenant_id = @TenantId AND id = @Id";

        public async Task<Result<VirtualServer.Response>> Handle(Query request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var row = await connection.QuerySingleOrDefaultAsync<VirtualServer.Row>(new CommandDefinition(Sql, new { session.TenantId, request.Id }, cancellationToken: ct));
            return row is null ? Error.NotFound("virtual server") : row.ToResponse();
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/{id:guid}", async (Guid id, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(id), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("A virtual server: its name, tools, selectors and risk ceiling.")
            .Produces<VirtualServer.Response>()
            .ProducesProblem(StatusCodes.Status404NotFound);
}
