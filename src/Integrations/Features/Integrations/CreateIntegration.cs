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

namespace Integrations.Features.Integrations;

public static class CreateIntegration
{
    public sealed record Command(
        string Name,
        [OneOf(typeof(Integration), nameof(Integration.Providers))] string Provider,
        string? BaseUrl = null,
        string? CredentialRef = null,
        Integration.Limits? Limits = null,
        IReadOnlyList<string>? AllowedModels = null,
        IReadOnlyList<string>? Fallbacks = null) : IOperation<Integration.Response>, IAudited
    {
        public static string Operation => "integrations.create";
        public static string Scope => Scopes.Write;
    }

    internal sealed class Validator : AbstractValidator<Command>
    {
        public Validator(EgressAllowList allowList, CallerContext caller)
        {
            RuleFor(x => x.Name).ValidName();
            RuleFor(x => x.Provider).Must(p => Integration.Providers.Contains(p))
                .WithMessage($"Provider must be one of: {string.Join(", ", Integration.Providers)}.");
            RuleFor(x => x.BaseUrl).ValidBaseUrl(allowList);
            RuleFor(x => x.BaseUrl).NotEmpty()
                .When(x => x.Provider is "azure_openai" or "openai_compatible")
                .WithMessage("Base URL is required for azure_openai and openai_compatible providers.");
            RuleFor(x => x.CredentialRef).ValidCredentialRef(() => caller.TenantId).When(x => x.CredentialRef is not null);
            this.ValidLimits(x => x.Limits);
            RuleFor(x => x.AllowedModels).ValidModels();
            RuleFor(x => x.Fallbacks).ValidFallbacks(x => x.Name);
        }
    }

    internal sealed class Handler(TenantSession session, AuditTrail audit, CredentialGrants grants) : IRequestHandler<Command, Result<Integration.Response>>
    {
        private const string Sql = $"""
            INSERT INTO cus_integrations (id, tenant_id, name, provider, base_url, credential_ref,
                requests_per_minute, tokens_per_month, budget_cents_per_month, allowed_models, fallbacks)
            VALUES (@Id, @TenantId, @Name, @Provider, @BaseUrl, @CredentialRef,
                @RequestsPerMinute, @TokensPerMonth, @BudgetCentsPerMonth, @AllowedModels, @Fallbacks)
            ON CONFLICT DO NOTHING
            RETURNING {Integration.Columns}
            """;

        public async Task<Result<Integration.Response>> Handle(Command request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var row = await connection.QuerySingleOrDefaultAsync<Integration.Row>(new CommandDefinition(Sql, new
            {
                Id = Ids.New(),
                session.TenantId,
                request.Name,
                request.Provider,
                request.BaseUrl,
                request.CredentialRef,
                request.Limits?.RequestsPerMinute,
                request.Limits?.TokensPerMonth,
                request.Limits?.BudgetCentsPerMonth,
                AllowedModels = (request.AllowedModels ?? []).Distinct().ToArray(),
                Fallbacks = (request.Fallbacks ?? []).Distinct().ToArray(),
            }, cancellationToken: ct));
            if (row is null) return Error.Conflict($"An integration named '{request.Name}' already exists.");
            var accessor = new CredentialAccessor(CredentialAccessor.Integration, row.Id);
            if (await grants.AttachAsync(accessor, request.CredentialRef, ct) is { } credentialError) return credentialError;

            audit.Record(Integration.SubjectType, row.Id.ToString(), new
            {
                row.Name,
                row.Provider,
                row.BaseUrl,
                CredentialRef = CredentialReference.Describe(row.CredentialRef),
                row.Status,
                row.Fallbacks,
            });
            return row.ToResponse();
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPost("/", async (Command command, IMediator mediator, HttpContext http) =>
                (await mediator.Send(command, http.RequestAborted)).ToHttp(http,
                    created => TypedResults.Created($"/integrations/{created.Id}", created)))
            .WithName(Command.Operation)
            .WithRequestExample(new Command("openai-main", "openai", CredentialRef: "cus-vault://acme/0192f4a0-8c1e-7a3b-9d2e-5f6a7b8c9d0e",
                Limits: new Integration.Limits(RequestsPerMinute: 600, BudgetCentsPerMonth: 50_000), AllowedModels: ["gpt-4o-mini"]))
            .WithSummary("Create a BYOK LLM integration (status 'created').")
            .Produces<Integration.Response>(StatusCodes.Status201Created)
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status409Conflict);
}
