using System.Text;
using Dapper;
using FluentValidation;
using Integrations.Common;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.McpServers;

public static class ListMcpServerTools
{
    public sealed record Query(
        Guid ServerId, string? Status = null, bool? Enabled = null, string? RiskLevel = null, int Limit = 50, string? Cursor = null)
        : IOperation<Page<McpTool.Response>>
    {
        public static string Operation => "mcp_servers.tools";
        public static string Scope => Scopes.Read;
    }

    internal sealed class Validator : AbstractValidator<Query>
    {
        public Validator()
        {
            RuleFor(x => x.Status).Must(s => s is null || McpTool.Statuses.Contains(s))
                .WithMessage($"Status must be one of: {string.Join(", ", McpTool.Statuses)}.");
            RuleFor(x => x.RiskLevel).Must(r => r is null || ToolRisk.IsValid(r))
                .WithMessage($"Risk level must be one of: {string.Join(", ", ToolRisk.Levels)}.");
            RuleFor(x => x.Limit).PageLimit();
            RuleFor(x => x.Cursor).IdCursor();
        }
    }

    internal sealed class Handler(TenantSession session) : IRequestHandler<Query, Result<Page<McpTool.Response>>>
    {
        private const string ServerLiveSql =
            "SELECT EXISTS (SELECT 1 FROM mcp_servers WHERE tenant_id = @TenantId AND id = @ServerId AND deleted_at IS NULL)";

        public async Task<Result<Page<McpTool.Response>>> Handle(Query request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var live = await connection.ExecuteScalarAsync<bool>(new CommandDefinition(ServerLiveSql, new { session.TenantId, request.ServerId }, cancellationToken: ct));
            if (!live) return Error.NotFound("MCP server");

            Cursor.TryDecode(request.Cursor, out Guid after);
            var sql = new StringBuilder($"SELECT {McpTool.Columns} FROM mcp_tools t WHERE t.tenant_id = @TenantId AND t.server_id = @ServerId");
            if (request.Cursor is not null) sql.Append(" AND t.id < @After");
            if (request.Status is not null) sql.Append(" AND t.status = @Status");
            if (request.Enabled is not null) sql.Append(" AND t.enabled = @Enabled");
            if (request.RiskLevel is not null) sql.Append(" AND t.risk_level = @RiskLevel");
            sql.Append(" ORDER BY t.id DESC LIMIT @Take");

            var rows = (await connection.QueryAsync<McpTool.Row>(new CommandDefinition(sql.ToString(), new
            {
                session.TenantId,
                request.ServerId,
                After = after,
                request.Status,
                request.Enabled,
                request.RiskLevel,
                Take = request.Limit + 1,
            }, cancellationToken: ct))).AsList();

            return Paging.ToPage(rows, request.Limit, r => r.ToResponse(), r => Cursor.Encode(r.Id));
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/{id:guid}/tools", async (
                Guid id, [FromQuery, OneOf(typeof(McpTool), nameof(McpTool.Statuses))] string? status, [FromQuery] bool? enabled,
                [FromQuery(Name = "risk_level"), OneOf(typeof(ToolRisk), nameof(ToolRisk.Levels))] string? riskLevel,
                [FromQuery] int? limit, [FromQuery] string? cursor, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(id, status, enabled, riskLevel, limit ?? 50, cursor), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("The server's tools with status, risk level, enabled flag, schema and hashes; filters and keyset pagination.")
            .Produces<Page<McpTool.Response>>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status404NotFound);
}
