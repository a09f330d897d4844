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

namespace Integrations.Features.Credentials;

public static class RevokeCredentialGrant
{
    public sealed record Command(Guid CredentialId, string AccessorType, Guid AccessorId) : IOperation<Done>, IAudited
    {
        public static string Operation => "credentials.revoke_grant";
        public static string Scope => Scopes.Write;
    }

    internal sealed class Handler(TenantSession session, AuditTrail audit) : IRequestHandler<Command, Result<Done>>
    {
        private const string Sql = """
            DELETE FROM credential_grants
            WHERE tenant_id = @TenantId AND credential_id = @CredentialId AND accessor_type = @AccessorType AND accessor_id = @AccessorId
            """;

        public async Task<Result<Done>> Handle(Command request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var deleted = await connection.ExecuteAsync(new CommandDefinition(Sql, new
            {
                session.TenantId,
                request.CredentialId,
                request.AccessorType,
                request.AccessorId,
            }, cancellationToken: ct));
            if (deleted == 0) return Error.NotFound("grant");
            audit.Record(Credential.SubjectType, request.CredentialId.ToString(),
                new { request.AccessorType, request.AccessorId, Reason = "explicit" }, CredentialGrants.RevokedAction);
            return Done.Value;
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapDelete("/{id:guid}/grants/{accessorType}/{accessorId:guid}",
                async (Guid id, string accessorType, Guid accessorId, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id, accessorType, accessorId), http.RequestAborted)).ToHttp(http, _ => TypedResults.NoContent()))
            .WithName(Command.Operation)
            .WithSummary("Revoke an accessor's grant; its next resolution of the credential is denied.")
            .Produces(StatusCodes.Status204NoContent)
            .ProducesProblem(StatusCodes.Status404NotFound);
}
