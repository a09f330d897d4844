using System.Text;
using Dapper;
using FluentValidation;
using Integrations.Common;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using Integrations.Infrastructure.Vault;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.Credentials;

public static class ListCredentials
{
    public sealed record Query(string? Type = null, string? NamePrefix = null, int Limit = 50, string? Cursor = null)
        : IOperation<Page<Credential.Response>>
    {
        public static string Operation => "credentials.list";
        public static string Scope => Scopes.Read;
    }

    internal sealed class Validator : AbstractValidator<Query>
    {
        public Validator()
        {
            RuleFor(x => x.Type).Must(t => t is null || CredentialTypes.Storable.Contains(t))
                .WithMessage($"Type must be one of: {string.Join(", ", CredentialTypes.Storable)}.");
            RuleFor(x => x.NamePrefix).MaximumLength(200);
            RuleFor(x => x.Limit).PageLimit();
            RuleFor(x => x.Cursor).IdCursor();
        }
    }

    internal sealed class Handler(TenantSession session) : IRequestHandler<Query, Result<Page<Credential.Response>>>
    {
        public async Task<Result<Page<Credential.Response>>> Handle(Query request, CancellationToken ct)
        {
            Cursor.TryDecode(request.Cursor, out Guid after);
            var sql = new StringBuilder($"SELECT {Credential.Columns} FROM credentials WHERE tenant_id = @TenantId AND deleted_at IS NULL");
            if (request.Cursor is not null) sql.Append(" AND id < @After");
            if (request.Type is not null) sql.Append(" AND type = @Type");
            if (request.NamePrefix is not null) sql.Append(" AND starts_with(name, @NamePrefix)");
            sql.Append(" ORDER BY id DESC LIMIT @Take");

            var connection = await session.ConnectionAsync(ct);
            var rows = (await connection.QueryAsync<Credential.Row>(new CommandDefinition(sql.ToString(), new
            {
                session.TenantId,
                After = after,
                request.Type,
                request.NamePrefix,
                Take = request.Limit + 1,
            }, cancellationToken: ct))).AsList();
            return Paging.ToPage(rows, request.Limit, r => r.ToResponse(), r => Cursor.Encode(r.Id));
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/", async ([FromQuery, OneOf(typeof(CredentialTypes), nameof(CredentialTypes.Storable))] string? type, [FromQuery(Name = "name_prefix")] string? namePrefix,
                [FromQuery] int? limit, [FromQuery] string? cursor, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(type, namePrefix, limit ?? 50, cursor), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("List credentials (metadata only), newest first, with keyset pagination.")
            .Produces<Page<Credential.Response>>()
            .ProducesValidationProblem();
}
