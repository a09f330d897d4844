using Dapper;
using Integrations.Common;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using Integrations.Pipeline.Governance;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.Evidence;

/// <summary>evidence.policy.get: the evidence policy of an MCP server or datasource (<c>enabled: false</c> when none was set).</summary>
public static class GetEvidencePolicy
{
    public sealed record Query(string Target, Guid Id) : IOperation<TargetEvidencePolicy>
    {
        public static string Operation => "evidence.policy.get";
        public static string Scope => Scopes.Read;
    }

    internal sealed class Handler(TenantSession session) : IRequestHandler<Query, Result<TargetEvidencePolicy>>
    {
        public async Task<Result<TargetEvidencePolicy>> Handle(Query request, CancellationToken ct)
        {
            if (EvidenceTarget.Of(request.Target) is not var (table, subjectType))
            {
                return Error.Validation("target", $"The target is one of: {string.Join(", ", EvidenceTarget.Kinds)}.");
            }
            var connection = await session.ConnectionAsync(ct);
            var row = await connection.QuerySingleOrDefaultAsync<Row>(new CommandDefinition($"""
                SELECT evidence::text AS evidence FROM {table} WHERE tenant_id = @TenantId AND id = @Id AND deleted_at IS NULL
                """, new { session.TenantId, request.Id }, cancellationToken: ct));
            if (row is null) return Error.NotFound(subjectType.Replace('_', ' '));
            var policy = EvidencePolicy.FromJson(row.Evidence) ?? new EvidencePolicy(false);
            return new TargetEvidencePolicy(request.Target, request.Id, policy.Normalize());
        }

        private sealed record Row(string? Evidence);
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/policies/{target}/{id:guid}", async (string target, Guid id, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(target, id), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("The evidence policy of an MCP server (mcp-servers) or a datasource (datasources).")
            .Produces<TargetEvidencePolicy>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status404NotFound);
}
