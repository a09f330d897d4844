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

namespace Integrations.Features.Policies;

public static class UpdateToolPolicy
{
    /// <summary>Replaces the whole policy (PUT): omitted lists are empty, omitted limits are none.</summary>
    public sealed record Command(
        [OneOf(typeof(RiskLevels), nameof(RiskLevels.All))] string RiskCeiling = "medium",
        IReadOnlyList<string>? AllowList = null,
        IReadOnlyList<string>? DenyList = null,
        int? DefaultRateLimitPerMinute = null,
        int? TenantRateLimitPerMinute = null) : IOperation<ToolPolicy>, IAudited
    {
        public static string Operation => "policies.update";
        public static string Scope => Scopes.Admin;
    }

    internal sealed class Validator : AbstractValidator<Command>
    {
        public Validator()
        {
            RuleFor(x => x.RiskCeiling).Must(RiskLevels.IsValid)
                .WithMessage($"Risk ceiling must be one of: {string.Join(", ", RiskLevels.All)}.");
            RuleFor(x => x.AllowList).Must(ValidPatterns).WithMessage(PatternRule);
            RuleFor(x => x.DenyList).Must(ValidPatterns).WithMessage(PatternRule);
            RuleFor(x => x.DefaultRateLimitPerMinute).GreaterThan(0).WithMessage("The default rate limit must be at least 1 per minute.");
            RuleFor(x => x.TenantRateLimitPerMinute).GreaterThan(0).WithMessage("The tenant rate limit must be at least 1 per minute.");
        }

        private const string PatternRule =
            "At most 500 entries, each 'tool' or 'server/tool' (server by name or id, '*' as wildcard), 1-200 characters, at most one '/'.";

        private static bool ValidPatterns(IReadOnlyList<string>? patterns) =>
            patterns is null || (patterns.Count <= 500 && patterns.All(p =>
                !string.IsNullOrWhiteSpace(p) && p.Length <= 200 && p.Count(c => c == '/') <= 1 && !p.StartsWith('/') && !p.EndsWith('/')));
    }

    internal sealed class Handler(TenantSession session, AuditTrail audit, ChangeNotifications changes)
        : IRequestHandler<Command, Result<ToolPolicy>>
    {
        private static readonly string Sql = $"""
            INSERT INTO tool_policies (tenant_id, risk_ceiling, allow_list, deny_list, default_rate_limit_per_minute, tenant_rate_limit_per_minute, updated_at)
            VALUES (@TenantId, @RiskCeiling, @AllowList, @DenyList, @DefaultRateLimitPerMinute, @TenantRateLimitPerMinute, now())
            ON CONFLICT (tenant_id) DO UPDATE SET
                risk_ceiling = excluded.risk_ceiling, allow_list = excluded.allow_list, deny_list = excluded.deny_list,
                default_rate_limit_per_minute = excluded.default_rate_limit_per_minute,
                tenant_rate_limit_per_minute = excluded.tenant_rate_limit_per_minute, updated_at = now()
            RETURNING updated_at;
            {ChangeNotifications.NotifySql($"'{ToolPolicyStore.ChangeKeyPrefix}' || @TenantId")};
            """;

        public async Task<Result<ToolPolicy>> Handle(Command request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var policy = new ToolPolicy(request.RiskCeiling, [.. (request.AllowList ?? []).Distinct()], [.. (request.DenyList ?? []).Distinct()],
                request.DefaultRateLimitPerMinute, request.TenantRateLimitPerMinute, null);
            var updatedAt = await connection.QueryFirstAsync<DateTimeOffset>(new CommandDefinition(Sql, new
            {
                session.TenantId,
                policy.RiskCeiling,
                AllowList = policy.AllowList.ToArray(),
                DenyList = policy.DenyList.ToArray(),
                policy.DefaultRateLimitPerMinute,
                policy.TenantRateLimitPerMinute,
            }, cancellationToken: ct));
            var tenantId = session.TenantId;
            session.AfterCommit(() => changes.Publish(ToolPolicyStore.ChangeKeyPrefix + tenantId));
            audit.Record("tool_policy", session.TenantId, policy with { UpdatedAt = null });
            return policy with { UpdatedAt = updatedAt };
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPut("/tools", async (Command command, IMediator mediator, HttpContext http) =>
                (await mediator.Send(command, http.RequestAborted)).ToHttp(http))
            .WithName(Command.Operation)
            .WithSummary("Replace the tenant's tool policy (scope admin). Takes effect on the next call on every replica.")
            .Produces<ToolPolicy>()
            .ProducesValidationProblem();
}
