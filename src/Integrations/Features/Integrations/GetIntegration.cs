using Dapper;
using Integrations.Common;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.Integrations;

public static class GetIntegration
{
    public sealed record Query(Guid Id) : IOperation<Integration.Response>
    {
        public static string Operation => "integrations.get";
        public static string Scope => Scopes.Read;
    }

    internal sealed class Handler(TenantSession session) : IRequestHandler<Query, Result<Integration.Response>>
    {
        private const string Sql = $"""
            SELECT {Integration.Columns} FROM cus_integrations
            WHERE tenant_id = @TenantId AND id = @Id AND deleted_at IS NULL
            """;

        public async Task<Result<Integration.Response>> Handle(Query request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var row = await connection.QuerySingleOrDefaultAsync<Integration.Row>(
                new CommandDefinition(Sql, new { session.TenantId, request.Id }, cancellationToken: ct));
            return row is null ? Error.NotFound(Integration.SubjectType) : row.ToResponse();
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/{id:guid}", async (Guid id, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(id), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("Get one integration.")
            .Produces<Integration.Response>()
            .ProducesProblem(StatusCodes.Status404NotFound);
}
