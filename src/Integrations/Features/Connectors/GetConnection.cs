using Dapper;
using Integrations.Common;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.Connectors;

/// <summary>connections.get: one live connection (another tenant's is 404).</summary>
public static class GetConnection
{
    public sealed record Query(Guid Id) : IOperation<Connection.Response>
    {
        public static string Operation => "connections.get";
        public static string Scope => Scopes.Read;
    }

    internal sealed class Handler(TenantSession session) : IRequestHandler<Query, Result<Connection.Response>>
    {
        private const string Sql = $"SELECT {Connection.Columns} FROM connections WHERE tenant_id = @TenantId AND id = @Id AND deleted_at IS NULL";

        public async Task<Result<Connection.Response>> Handle(Query request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var row = await connection.QuerySingleOrDefaultAsync<Connection.Row>(new CommandDefinition(Sql, new { session.TenantId, request.Id }, cancellationToken: ct));
            return row is null ? Error.NotFound("connection") : row.ToResponse();
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/{id:guid}", async (Guid id, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(id), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("One connection: its connector, configuration, credential reference (described, never the secret) and state.")
            .Produces<Connection.Response>()
            .ProducesProblem(StatusCodes.Status404NotFound);
}
