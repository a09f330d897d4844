using Dapper;
using Integrations.Common;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.VirtualServers;

public static class DeleteVirtualServer
{
    public sealed record Command(Guid Id) : IOperation<Done>, IAudited
    {
        public static string Operation => "virtual_servers.delete";
        public static string Scope => Scopes.Write;
    }

    internal sealed class Handler(TenantSession session, AuditTrail audit) : IRequestHandler<Command, Result<Done>>
    {
        private const string Sql = "DELETE FROM virtual_servers WHERE tenant_id = @TenantId AND id = @Id RETURNING name";

        public async Task<Result<Done>> Handle(Command request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var name = await connection.QuerySingleOrDefaultAsync<string?>(new CommandDefinition(Sql, new { session.TenantId, request.Id }, cancellationToken: ct));
            if (name is null) return Error.NotFound("virtual server");
            audit.Record(VirtualServer.SubjectType, request.Id.ToString(), new { Name = name });
            return Done.Value;
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapDelete("/{id:guid}", async (Guid id, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id), http.RequestAborted)).ToHttp(http, _ => TypedResults.NoContent()))
            .WithName(Command.Operation)
            .WithSummary("Delete a virtual server; /mcp/{name} serves nothing from then on, and the name can be used again.")
            .Produces(StatusCodes.Status204NoContent)
            .ProducesProblem(StatusCodes.Status404NotFound);
}
