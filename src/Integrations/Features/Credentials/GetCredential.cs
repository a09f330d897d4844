using Dapper;
using Integrations.Common;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.Credentials;

public static class GetCredential
{
    public sealed record Query(Guid Id) : IOperation<Response>
    {
        public static string Operation => "credentials.get";
        public static string Scope => Scopes.Read;
    }

    /// <summary>Metadata and the accessors granted; never the secret.</summary>
    public sealed record Response(Credential.Response Credential, IReadOnlyList<Credential.Grant> Grants);

    internal sealed class Handler(TenantSession session) : IRequestHandler<Query, Result<Response>>
    {
        private const string Sql = $"""
            SELECT {Credential.Columns} FROM credentials WHERE tenant_id = @TenantId AND id = @Id AND deleted_at IS NULL;
            SELECT accessor_type, accessor_id, granted_by, created_at FROM credential_grants
            WHERE tenant_id = @TenantId AND credential_id = @Id ORDER BY created_at, accessor_type, accessor_id;
            """;

        public async Task<Result<Response>> Handle(Query request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            using var results = await connection.QueryMultipleAsync(
                new CommandDefinition(Sql, new { session.TenantId, request.Id }, cancellationToken: ct));
            var row = await results.ReadSingleOrDefaultAsync<Credential.Row>();
            var grants = (await results.ReadAsync<Credential.GrantRow>()).Select(g => g.ToGrant()).ToList();
            return row is null ? Error.NotFound(Credential.SubjectType) : new Response(row.ToResponse(), grants);
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/{id:guid}", async (Guid id, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(id), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("A credential's metadata and grants (never its secret).")
            .Produces<Response>()
            .ProducesProblem(StatusCodes.Status404NotFound);
}
