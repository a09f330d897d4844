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
using Npgsql;

namespace Integrations.Features.Credentials;

public static class UpdateCredential
{
    /// <summary>Omitted fields stay as they are; <c>allowed_hosts: []</c> removes the binding. The secret is never touched.</summary>
    public sealed record Body(string? Description = null, IReadOnlyList<string>? AllowedHosts = null, string? Name = null);

    /// <summary>
    /// Scope admin: changing where a stored secret may be sent, without supplying the secret, is the one change that
    /// could point an existing key at a new host (rotation may set allowed_hosts too, since it brings its own secret).
    /// </summary>
    public sealed record Command(Guid Id, Body Changes) : IOperation<Credential.Response>, IAudited
    {
        public static string Operation => "credentials.update";
        public static string Scope => Scopes.Admin;
    }

    internal sealed class Validator : AbstractValidator<Command>
    {
        public Validator()
        {
            RuleFor(x => x.Changes).NotNull().WithMessage("A body with the changes is required.");
            RuleFor(x => x.Changes.Name).ValidCredentialName().OverridePropertyName("Name").When(x => x.Changes?.Name is not null);
            RuleFor(x => x.Changes.Description).MaximumLength(1000).WithMessage("Description may be at most 1000 characters.")
                .OverridePropertyName("Description").When(x => x.Changes is not null);
            RuleFor(x => x.Changes.AllowedHosts).Must(h => h is null || h.Count == 0 || CredentialHosts.Normalize(h) is not null)
                .WithMessage(CredentialHosts.Rule + " An empty list removes the binding.")
                .OverridePropertyName("AllowedHosts").When(x => x.Changes is not null);
        }
    }

    internal sealed class Handler(TenantSession session, AuditTrail audit) : IRequestHandler<Command, Result<Credential.Response>>
    {
        private const string Sql = $"""
            UPDATE credentials SET
                name = coalesce(@Name, name),
                description = coalesce(@Description, description),
                allowed_hosts = CASE WHEN @SetHosts THEN @AllowedHosts ELSE allowed_hosts END
            WHERE tenant_id = @TenantId AND id = @Id AND deleted_at IS NULL
            RETURNING {Credential.Columns}
            """;

        public async Task<Result<Credential.Response>> Handle(Command request, CancellationToken ct)
        {
            var changes = request.Changes;
            var hosts = changes.AllowedHosts is { Count: > 0 } given ? CredentialHosts.Normalize(given) : null;
            var connection = await session.ConnectionAsync(ct);
            Credential.Row? row;
            try
            {
                row = await connection.QuerySingleOrDefaultAsync<Credential.Row>(new CommandDefinition(Sql, new
                {
                    session.TenantId,
                    request.Id,
                    changes.Name,
                    changes.Description,
                    SetHosts = changes.AllowedHosts is not null,
                    AllowedHosts = hosts,
                }, cancellationToken: ct));
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.UniqueViolation)
            {
                return Error.Conflict($"A credential named '{changes.Name}' already exists.");
            }
            if (row is null) return Error.NotFound(Credential.SubjectType);
            audit.Record(Credential.SubjectType, row.Id.ToString(), new
            {
                row.Name,
                Changed = new { changes.Name, changes.Description, AllowedHosts = changes.AllowedHosts is null ? null : (object?)(hosts ?? []) },
            });
            return row.ToResponse();
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPatch("/{id:guid}", async (Guid id, Body body, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id, body), http.RequestAborted)).ToHttp(http))
            .WithName(Command.Operation)
            .WithSummary("Change a credential's name, description or the hosts it may be sent to (scope admin); the secret stays as it is.")
            .Produces<Credential.Response>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status409Conflict);
}
