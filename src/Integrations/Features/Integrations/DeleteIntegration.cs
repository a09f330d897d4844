using Dapper;
using Integrations.Common;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using Integrations.Infrastructure.Vault;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.Integrations;

public static class DeleteIntegration
{
    public sealed record Command(Guid Id) : IOperation<Done>, IAudited
    {
        public static string Operation => "integrations.delete";
        public static string Scope => Scopes.Write;
    }

    internal sealed class Handler(TenantSession session, AuditTrail audit, CredentialGrants grants) : IRequestHandler<Command, Result<Done>>
    {
        private const string Sql = """
            UPDATE cus_integrations SET deleted_at = now(), updated_at = now()
            WHERE tenant_id = @TenantId AND id = @Id AND deleted_at IS NULL
            RETURNING name
            """;

        public async Task<Result<Done>> Handle(Command request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var name = await connection.QuerySingleOrDefaultAsync<string>(
                new CommandDefinition(Sql, new { session.TenantId, request.Id }, cancellationToken: ct));
            if (name is null) return Error.NotFound(Integration.SubjectType);
            await grants.DetachAllAsync(new CredentialAccessor(CredentialAccessor.Integration, request.Id), ct);
            audit.Record(Integration.SubjectType, request.Id.ToString(), new { Name = name });
            return Done.Value;
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapDelete("/{id:guid}", async (Guid id, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id), http.RequestAborted)).ToHttp(http, _ => TypedResults.NoContent()))
            .WithName(Command.Operation)
            .WithSummary("Delete an integration (soft: it disappears from every read; its audit trail stays).")
            .Produces(StatusCodes.Status204NoContent)
            .ProducesProblem(StatusCodes.Status404NotFound);
}
