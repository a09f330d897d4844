using Dapper;
using FluentValidation;
using Integrations.Common;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using Integrations.Infrastructure.Network;
using Integrations.Infrastructure.Vault;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Npgsql;

namespace Integrations.Features.Integrations;

public static class UpdateIntegration
{
    /// <summary>Fields left null keep their value; <c>limits</c>, when given, replaces all three limits.</summary>
    public sealed record Body(
        string? Name = null,
        string? BaseUrl = null,
        string? CredentialRef = null,
        Integration.Limits? Limits = null,
        IReadOnlyList<string>? AllowedModels = null,
        IReadOnlyList<string>? Fallbacks = null);

    public sealed record Command(Guid Id, Body Changes) : IOperation<Integration.Response>, IAudited
    {
        public static string Operation => "integrations.update";
        public static string Scope => Scopes.Write;
    }

    internal sealed class Validator : AbstractValidator<Command>
    {
        public Validator(EgressAllowList allowList, CallerContext caller)
        {
            RuleFor(x => x.Changes).NotNull().WithMessage("A body with the fields to change is required.");
            RuleFor(x => x.Changes.Name).ValidName().OverridePropertyName("Name").When(x => x.Changes?.Name is not null);
            RuleFor(x => x.Changes.BaseUrl).ValidBaseUrl(allowList).OverridePropertyName("BaseUrl").When(x => x.Changes is not null);
            RuleFor(x => x.Changes.CredentialRef).ValidCredentialRef(() => caller.TenantId).OverridePropertyName("CredentialRef")
                .When(x => x.Changes?.CredentialRef is not null);
            this.ValidLimits(x => x.Changes?.Limits);
            RuleFor(x => x.Changes.AllowedModels).ValidModels().OverridePropertyName("AllowedModels").When(x => x.Changes is not null);
            RuleFor(x => x.Changes.Fallbacks).ValidFallbacks(x => x.Changes.Name).OverridePropertyName("Fallbacks").When(x => x.Changes is not null);
        }
    }

    internal sealed class Handler(TenantSession session, AuditTrail audit, CredentialGrants grants) : IRequestHandler<Command, Result<Integration.Response>>
    {
        private const string Sql = $"""
            UPDATE cus_integrations SET
                name = coalesce(@Name, name),
                base_url = coalesce(@BaseUrl, base_url),
                credential_ref = coalesce(@CredentialRef, credential_ref),
                requests_per_minute = CASE WHEN @SetLimits THEN @RequestsPerMinute::integer ELSE requests_per_minute END,
                tokens_per_month = CASE WHEN @SetLimits THEN @TokensPerMonth::bigint ELSE tokens_per_month END,
                budget_cents_per_month = CASE WHEN @SetLimits THEN @BudgetCentsPerMonth::bigint ELSE budget_cents_per_month END,
                allowed_models = coalesce(@AllowedModels::text[], allowed_models),
                fallbacks = coalesce(@Fallbacks::text[], fallbacks),
                updated_at = now()
            WHERE tenant_id = @TenantId AND id = @Id AND deleted_at IS NULL
            RETURNING {Integration.Columns}
            """;

        public async Task<Result<Integration.Response>> Handle(Command request, CancellationToken ct)
        {
            var changes = request.Changes;
            var connection = await session.ConnectionAsync(ct);
            Integration.Row? row;
            try
            {
                row = await connection.QuerySingleOrDefaultAsync<Integration.Row>(new CommandDefinition(Sql, new
                {
                    session.TenantId,
                    request.Id,
                    changes.Name,
                    changes.BaseUrl,
                    changes.CredentialRef,
                    SetLimits = changes.Limits is not null,
                    changes.Limits?.RequestsPerMinute,
                    changes.Limits?.TokensPerMonth,
                    changes.Limits?.BudgetCentsPerMonth,
                    AllowedModels = changes.AllowedModels?.Distinct().ToArray(),
                    Fallbacks = changes.Fallbacks?.Distinct().ToArray(),
                }, cancellationToken: ct));
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.UniqueViolation)
            {
                return Error.Conflict($"An integration named '{changes.Name}' already exists.");
            }
            if (row is null) return Error.NotFound(Integration.SubjectType);
            var accessor = new CredentialAccessor(CredentialAccessor.Integration, row.Id);
            if (await grants.AttachAsync(accessor, changes.CredentialRef, ct) is { } credentialError) return credentialError;
            // A new base URL sends the credential already attached to a new destination: that is attaching it again.
            if (changes.BaseUrl is not null && changes.CredentialRef is null && row.CredentialRef is { } attached
                && await grants.MayAttachAsync(accessor, attached, destinationHost: null, ct) is { } moveError)
            {
                return moveError;
            }

            audit.Record(Integration.SubjectType, row.Id.ToString(), new
            {
                Changed = new
                {
                    changes.Name,
                    changes.BaseUrl,
                    CredentialRef = changes.CredentialRef is null ? null : CredentialReference.Describe(changes.CredentialRef),
                    changes.Limits,
                    changes.AllowedModels,
                    changes.Fallbacks,
                },
            });
            return row.ToResponse();
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPatch("/{id:guid}", async (Guid id, Body body, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id, body), http.RequestAborted)).ToHttp(http))
            .WithName(Command.Operation)
            .WithSummary("Change an integration's name, base URL, credential reference, limits, allowed models or fallbacks.")
            .Produces<Integration.Response>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status409Conflict);
}
