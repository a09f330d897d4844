using Dapper;
using FluentValidation;
using Integrations.Common;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using Integrations.Infrastructure.Security;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.ApiKeys;

/// <summary>api_keys.create: a new key for the caller's tenant. The key is in this answer only; the service keeps its hash.</summary>
public static class CreateApiKey
{
    /// <summary>The longest a key may live: a year. A key without <c>expires_at</c> lives until revoked.</summary>
    public static readonly TimeSpan MaxLifetime = TimeSpan.FromDays(366);

    public sealed record Command(string Name, [OneOf(typeof(Common.Scopes), nameof(Common.Scopes.All))] IReadOnlyList<string> Scopes, DateTimeOffset? ExpiresAt = null,
        ApiKey.Limits? Limits = null, IReadOnlyList<string>? AllowedModels = null) : IOperation<Response>, IAudited
    {
        public static string Operation => "api_keys.create";
        public static string Scope => Common.Scopes.Admin;
    }

    /// <param name="Key">The key itself: shown once, here. Send it as <c>Authorization: Bearer &lt;key&gt;</c>.</param>
    public sealed record Response(ApiKey.Response ApiKey, string Key);

    internal sealed class Validator : AbstractValidator<Command>
    {
        public Validator(TimeProvider time)
        {
            RuleFor(x => x.Name).NotEmpty().MaximumLength(100);
            RuleFor(x => x.Scopes).NotEmpty().WithMessage("A key needs at least one scope.")
                .Must(s => s.All(Common.Scopes.All.Contains)).WithMessage($"Scopes must be among: {string.Join(", ", Common.Scopes.All)}.")
                .Must(s => s.Distinct().Count() == s.Count).WithMessage("Each scope once.");
            RuleFor(x => x.ExpiresAt)
                .Must(e => e is null || (e > time.GetUtcNow() && e <= time.GetUtcNow() + MaxLifetime))
                .WithMessage($"expires_at must be in the future and at most {MaxLifetime.TotalDays:0} days away.");
            this.ValidLimits(x => x.Limits);
            RuleFor(x => x.AllowedModels).ValidModels();
        }
    }

    internal sealed class Handler(TenantSession session, AuditTrail audit, TimeProvider time) : IRequestHandler<Command, Result<Response>>
    {
        private const string Sql = $"""
            INSERT INTO api_keys (id, tenant_id, name, key_hash, scopes, expires_at, requests_per_minute, tokens_per_month,
                                  budget_cents_per_month, allowed_models)
            VALUES (@Id, @TenantId, @Name, @SecretHash, @Scopes, @ExpiresAt, @RequestsPerMinute, @TokensPerMonth, @BudgetCentsPerMonth, @AllowedModels)
            RETURNING {ApiKey.Columns}
            """;

        public async Task<Result<Response>> Handle(Command request, CancellationToken ct)
        {
            var minted = Infrastructure.Security.ApiKeys.Mint();
            var connection = await session.ConnectionAsync(ct);
            var row = await connection.QuerySingleAsync<ApiKey.Row>(new CommandDefinition(Sql, new
            {
                minted.Id,
                session.TenantId,
                request.Name,
                minted.SecretHash,
                Scopes = request.Scopes.ToArray(),
                ExpiresAt = request.ExpiresAt?.UtcDateTime,
                request.Limits?.RequestsPerMinute,
                request.Limits?.TokensPerMonth,
                request.Limits?.BudgetCentsPerMonth,
                AllowedModels = (request.AllowedModels ?? []).Distinct().ToArray(),
            }, cancellationToken: ct));
            audit.Record(ApiKey.SubjectType, minted.Id.ToString(), new { request.Name, request.Scopes, request.ExpiresAt, request.Limits, request.AllowedModels });
            return new Response(row.ToResponse(time.GetUtcNow()), minted.Key);
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPost("/", async (Command command, IMediator mediator, HttpContext http) =>
                (await mediator.Send(command, http.RequestAborted)).ToHttp(http, r => TypedResults.Created($"/api-keys/{r.ApiKey.Id}", r)))
            .WithName(Command.Operation)
            .WithRequestExample(new Command("ci-runner", [Common.Scopes.Read, Common.Scopes.LlmInvoke], new DateTimeOffset(2027, 1, 31, 0, 0, 0, TimeSpan.Zero),
                new ApiKey.Limits(RequestsPerMinute: 60, BudgetCentsPerMonth: 2_000), ["gpt-4o-mini"]))
            .WithSummary("Create an API key for your tenant (scope admin); the key is shown once, in this answer.")
            .Produces<Response>(StatusCodes.Status201Created)
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status403Forbidden);
}
