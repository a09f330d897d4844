using Dapper;
using Integrations.Common;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.Credentials;

public static class DeleteCredential
{
    public sealed record Command(Guid Id) : IOperation<Done>, IAudited
    {
        public static string Operation => "credentials.delete";
        public static string Scope => Scopes.Write;
    }

    /// <summary>
    /// Soft delete: the metadata and the access log stay; the wrapped data key and ciphertext are erased (so the secret is
    /// unrecoverable even from backups taken afterwards) and the grants are dropped. References then fail with
    /// <c>credential_not_found</c>.
    /// </summary>
    internal sealed class Handler(TenantSession session, AuditTrail audit) : IRequestHandler<Command, Result<Done>>
    {
        private const string Sql = """
            UPDATE credentials SET deleted_at = now(), ciphertext = ''::bytea, wrapped_key = ''::bytea
            WHERE tenant_id = @TenantId AND id = @Id AND deleted_at IS NULL
            RETURNING name;
            """;

        private const string GrantsSql = "DELETE FROM credential_grants WHERE tenant_id = @TenantId AND credential_id = @Id";

        public async Task<Result<Done>> Handle(Command request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var args = new { session.TenantId, request.Id };
            var name = await connection.QuerySingleOrDefaultAsync<string>(new CommandDefinition(Sql, args, cancellationToken: ct));
            if (name is null) return Error.NotFound(Credential.SubjectType);
            var grants = await connection.ExecuteAsync(new CommandDefinition(GrantsSql, args, cancellationToken: ct));
            audit.Record(Credential.SubjectType, request.Id.ToString(), new { Name = name, GrantsDropped = grants });
            return Done.Value;
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapDelete("/{id:guid}", async (Guid id, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id), http.RequestAborted)).ToHttp(http, _ => TypedResults.NoContent()))
            .WithName(Command.Operation)
            .WithSummary("Delete a credential: its secret is erased, its grants dropped; references to it fail with credential_not_found.")
            .Produces(StatusCodes.Status204NoContent)
            .ProducesProblem(StatusCodes.Status404NotFound);
}
