using Dapper;
using FluentValidation;
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

public static class GrantCredential
{
    public sealed record Body(string AccessorType, Guid AccessorId);

    public sealed record Command(Guid CredentialId, string AccessorType, Guid AccessorId) : IOperation<Credential.Grant>, IAudited
    {
        public static string Operation => "credentials.grant";
        public static string Scope => Scopes.Write;
    }

    internal sealed class Validator : AbstractValidator<Command>
    {
        public Validator()
        {
            RuleFor(x => x.AccessorType).Must(t => CredentialAccessor.Grantable.Contains(t))
                .WithMessage($"Accessor type must be one of: {string.Join(", ", CredentialAccessor.Grantable)}.");
            RuleFor(x => x.AccessorId).NotEmpty().WithMessage("Accessor id is required.");
        }
    }

    /// <summary>
    /// Lets an accessor of the same tenant resolve the credential; both must exist, and the grant is an attachment
    /// like any other (<c>credentials:use</c>, the credential's allowed hosts, the tenant's credential policy).
    /// </summary>
    internal sealed class Handler(TenantSession session, AuditTrail audit, CallerContext caller, CredentialGrants grants) : IRequestHandler<Command, Result<Credential.Grant>>
    {
        private const string CredentialSql = "SELECT EXISTS (SELECT 1 FROM credentials WHERE tenant_id = @TenantId AND id = @CredentialId AND deleted_at IS NULL)";

        // Granting twice is not an error: the existing grant is answered (the statement cannot see its own insert).
        private const string GrantSql = """
            WITH inserted AS (
                INSERT INTO credential_grants (tenant_id, credential_id, accessor_type, accessor_id, granted_by)
                VALUES (@TenantId, @CredentialId, @AccessorType, @AccessorId, @Actor)
                ON CONFLICT DO NOTHING
                RETURNING accessor_type, accessor_id, granted_by, created_at)
            SELECT * FROM inserted
            UNION ALL
            SELECT accessor_type, accessor_id, granted_by, created_at FROM credential_grants
            WHERE tenant_id = @TenantId AND credential_id = @CredentialId AND accessor_type = @AccessorType AND accessor_id = @AccessorId
            LIMIT 1
            """;

        public async Task<Result<Credential.Grant>> Handle(Command request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var args = new { session.TenantId, request.CredentialId, request.AccessorType, request.AccessorId, caller.Required.Actor };
            if (!await connection.ExecuteScalarAsync<bool>(new CommandDefinition(CredentialSql, args, cancellationToken: ct)))
            {
                return Error.NotFound(Credential.SubjectType);
            }
            var accessor = new CredentialAccessor(request.AccessorType, request.AccessorId);
            var (found, _) = await CredentialResolver.StoredReferenceAsync(connection, session.TenantId, accessor, ct);
            if (!found) return Error.NotFound(request.AccessorType.Replace('_', ' '));
            var reference = CredentialReference.ForVault(session.TenantId, request.CredentialId);
            if (await grants.MayAttachAsync(accessor, reference, destinationHost: null, ct) is { } refused) return refused;

            var row = await connection.QuerySingleAsync<Credential.GrantRow>(new CommandDefinition(GrantSql, args, cancellationToken: ct));
            audit.Record(Credential.SubjectType, request.CredentialId.ToString(),
                new { request.AccessorType, request.AccessorId, Reason = "explicit" }, CredentialGrants.GrantedAction);
            return row.ToGrant();
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPost("/{id:guid}/grants", async (Guid id, Body body, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id, body.AccessorType, body.AccessorId), http.RequestAborted)).ToHttp(http,
                    grant => TypedResults.Created($"/credentials/{id}", grant)))
            .WithName(Command.Operation)
            .WithSummary("Grant an integration, MCP server or datasource of this tenant the right to resolve the credential.")
            .Produces<Credential.Grant>(StatusCodes.Status201Created)
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status404NotFound);
}
