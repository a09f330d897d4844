using Dapper;
using FluentValidation;
using Integrations.Common;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.ApiKeys;

/// <summary>
/// api_keys.set_limits: replaces what the LLM gateway lets a key spend — requests per minute, tokens and cents per month,
/// allowed models (empty: any the integration allows). Takes effect from the key's next call.
/// </summary>
public static class SetApiKeyLimits
{
    public sealed record Command(Guid Id, ApiKey.Limits? Limits = null, IReadOnlyList<string>? AllowedModels = null) : IOperation<ApiKey.Response>, IAudited
    {
        public static string Operation => "api_keys.set_limits";
        public static string Scope => Scopes.Admin;
    }

    public sealed record Body(ApiKey.Limits? Limits = null, IReadOnlyList<string>? AllowedModels = null);

    internal sealed class Validator : AbstractValidator<Command>
    {
        public Validator()
        {
            this.ValidLimits(x => x.Limits);
            RuleFor(x => x.AllowedModels).ValidModels();
        }
    }

    internal sealed class Handler(TenantSession session, AuditTrail audit, TimeProvider time) : IRequestHandler<Command, Result<ApiKey.Response>>
    {
        private const string Sql = $"""
            UPDATE api_keys SET requests_per_minute = @RequestsPerMinute, tokens_per_month = @TokensPerMonth,
                budget_cents_per_month = @BudgetCentsPerMonth, allowed_models = @AllowedModels
            WHERE tenant_id = @TenantId AND id = @Id AND revoked_at IS NULL
            RETURNING {ApiKey.Columns}
            """;

        public async Task<Result<ApiKey.Response>> Handle(Command request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var row = await connection.QuerySingleOrDefaultAsync<ApiKey.Row>(new CommandDefinition(Sql, new
            {
                session.TenantId,
                request.Id,
                request.Limits?.RequestsPerMinute,
                request.Limits?.TokensPerMonth,
                request.Limits?.BudgetCentsPerMonth,
                AllowedModels = (request.AllowedModels ?? []).Distinct().ToArray(),
            }, cancellationToken: ct));
            if (row is null) return Error.NotFound("API key");
            audit.Record(ApiKey.SubjectType, request.Id.ToString(), new { request.Limits, request.AllowedModels });
            return row.ToResponse(time.GetUtcNow());
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPut("/{id:guid}/limits", async (Guid id, Body body, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id, body.Limits, body.AllowedModels), http.RequestAborted)).ToHttp(http))
            .WithName(Command.Operation)
            .WithRequestExample(new Body(new ApiKey.Limits(RequestsPerMinute: 30, TokensPerMonth: 5_000_000, BudgetCentsPerMonth: 1_000), ["gpt-4o-mini"]))
            .WithSummary("Set what the LLM gateway lets one of your keys spend (scope admin): requests per minute, tokens and cents per month, allowed models; the stricter of the key's and the integration's limits wins.")
            .Produces<ApiKey.Response>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status403Forbidden)
            .ProducesProblem(StatusCodes.Status404NotFound);
}
