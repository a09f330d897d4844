using Dapper;
using FluentValidation;
using Integrations.Common;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using Integrations.Pipeline.Governance;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.McpServers;

public static class UpdateMcpTool
{
    /// <summary>
    /// Fields left null keep their value. <c>risk_level</c> needs a <c>reason</c> and marks the risk as overridden (later
    /// discoveries keep it). <c>approve_hash</c> approves a drifted tool's current definition and must repeat its
    /// <c>definition_hash</c>, so what is approved is what was reviewed. <c>rate_limit_per_minute</c>: 1 or more sets the
    /// tool's own limit, 0 removes it (the tenant's default applies). <c>evidence</c>: <c>on</c> or <c>off</c> keeps this tool's
    /// outputs as evidence or not whatever its server's policy says; <c>inherit</c> follows the server's again.
    /// </summary>
    public sealed record Body(bool? Enabled = null, [OneOf(typeof(ToolRisk), nameof(ToolRisk.Levels))] string? RiskLevel = null, string? Reason = null, string? ApproveHash = null, int? RateLimitPerMinute = null,
        [OneOf(typeof(EvidencePolicy), nameof(EvidencePolicy.ToolChoices))] string? Evidence = null);

    public sealed record Command(Guid ServerId, Guid ToolId, Body Changes) : IOperation<McpTool.Response>, IAudited
    {
        public static string Operation => "tools.update";
        public static string Scope => Scopes.Write;
    }

    internal sealed class Validator : AbstractValidator<Command>
    {
        public Validator()
        {
            RuleFor(x => x.Changes).NotNull().WithMessage("A body with the fields to change is required.")
                .Must(c => c is null || c.Enabled is not null || c.RiskLevel is not null || c.ApproveHash is not null || c.RateLimitPerMinute is not null || c.Evidence is not null)
                .WithMessage("Give at least one of enabled, risk_level (with reason), approve_hash, rate_limit_per_minute, evidence.");
            RuleFor(x => x.Changes.Evidence).Must(e => EvidencePolicy.ToolChoices.Contains(e)).OverridePropertyName("Evidence")
                .WithMessage($"Evidence must be one of: {string.Join(", ", EvidencePolicy.ToolChoices)}.")
                .When(x => x.Changes?.Evidence is not null);
            RuleFor(x => x.Changes.RiskLevel).Must(ToolRisk.IsValid).OverridePropertyName("RiskLevel")
                .WithMessage($"Risk level must be one of: {string.Join(", ", ToolRisk.Levels)}.")
                .When(x => x.Changes?.RiskLevel is not null);
            RuleFor(x => x.Changes.Reason).NotEmpty().MaximumLength(500).OverridePropertyName("Reason")
                .WithMessage("Setting a risk level needs a reason (1-500 characters).")
                .When(x => x.Changes?.RiskLevel is not null);
            RuleFor(x => x.Changes.ApproveHash).Matches("^[0-9a-f]{64}$").OverridePropertyName("ApproveHash")
                .WithMessage("approve_hash is the tool's definition_hash: 64 lower-case hex digits.")
                .When(x => x.Changes?.ApproveHash is not null);
            RuleFor(x => x.Changes.RateLimitPerMinute).InclusiveBetween(0, 1_000_000).OverridePropertyName("RateLimitPerMinute")
                .When(x => x.Changes?.RateLimitPerMinute is not null);
        }
    }

    internal sealed class Handler(TenantSession session, AuditTrail audit, CallerContext caller) : IRequestHandler<Command, Result<McpTool.Response>>
    {
        private const string FindSql = $"""
            SELECT {McpTool.Columns} FROM mcp_tools t
            JOIN mcp_servers s ON s.tenant_id = t.tenant_id AND s.id = t.server_id AND s.deleted_at IS NULL
            WHERE t.tenant_id = @TenantId AND t.server_id = @ServerId AND t.id = @ToolId
            FOR UPDATE OF t
            """;

        private const string UpdateSql = $"""
            UPDATE mcp_tools t SET
                enabled = coalesce(@Enabled, enabled),
                risk_level = coalesce(@RiskLevel, risk_level),
                risk_overridden = risk_overridden OR @RiskLevel IS NOT NULL,
                risk_reason = coalesce(@RiskReason, risk_reason),
                approved_hash = CASE WHEN @Approve THEN definition_hash ELSE approved_hash END,
                approved_definition = CASE WHEN @Approve THEN {McpTool.CurrentDefinitionSql} ELSE approved_definition END,
                status = CASE WHEN @Approve THEN 'active' ELSE status END,
                rate_limit_per_minute = CASE WHEN @RateLimitPerMinute::integer IS NULL THEN rate_limit_per_minute
                    ELSE nullif(@RateLimitPerMinute::integer, 0) END,
                evidence = CASE WHEN @Evidence::text IS NULL THEN evidence ELSE nullif(@Evidence::text, 'inherit') END,
                updated_at = now()
            WHERE tenant_id = @TenantId AND id = @ToolId
            RETURNING {McpTool.Columns}
            """;

        public async Task<Result<McpTool.Response>> Handle(Command request, CancellationToken ct)
        {
            var changes = request.Changes;
            var connection = await session.ConnectionAsync(ct);
            var tool = await connection.QuerySingleOrDefaultAsync<McpTool.Row>(new CommandDefinition(FindSql, new
            {
                session.TenantId,
                request.ServerId,
                request.ToolId,
            }, cancellationToken: ct));
            if (tool is null) return Error.NotFound("MCP tool");

            if (changes.ApproveHash is not null)
            {
                if (tool.Status != McpTool.Drifted) return Error.InvalidTransition("tool", tool.Status, "approved (only a drifted tool's definition is approved)");
                if (changes.ApproveHash != tool.DefinitionHash)
                {
                    return Error.Conflict($"The tool's definition is now {tool.DefinitionHash}, not the one given: review it again before approving.");
                }
            }
            if (changes.Enabled == true && tool.Status == McpTool.Removed)
            {
                return Error.InvalidTransition("tool", tool.Status, "enabled (the server no longer lists it)");
            }

            var updated = await connection.QuerySingleAsync<McpTool.Row>(new CommandDefinition(UpdateSql, new
            {
                session.TenantId,
                request.ToolId,
                changes.Enabled,
                changes.RiskLevel,
                RiskReason = changes.RiskLevel is null ? null : $"set to {changes.RiskLevel} by {caller.Required.Actor}: {changes.Reason}",
                Approve = changes.ApproveHash is not null,
                changes.RateLimitPerMinute,
                changes.Evidence,
            }, cancellationToken: ct));

            audit.Record(McpTool.SubjectType, tool.Id.ToString(), new
            {
                ServerId = tool.ServerId,
                tool.Name,
                Enabled = changes.Enabled is null ? null : new { From = tool.Enabled, To = updated.Enabled },
                RiskLevel = changes.RiskLevel is null ? null : new { From = tool.RiskLevel, To = updated.RiskLevel, changes.Reason },
                Approved = changes.ApproveHash is null ? null : new { PreviousHash = tool.ApprovedHash, Hash = updated.ApprovedHash },
                RateLimitPerMinute = changes.RateLimitPerMinute is null ? null : new { From = tool.RateLimitPerMinute, To = updated.RateLimitPerMinute },
                Evidence = changes.Evidence is null ? null : new { From = tool.Evidence ?? EvidencePolicy.ToolChoices[0], To = updated.Evidence ?? EvidencePolicy.ToolChoices[0] },
            });
            return updated.ToResponse();
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPatch("/{id:guid}/tools/{toolId:guid}", async (Guid id, Guid toolId, Body body, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id, toolId, body), http.RequestAborted)).ToHttp(http))
            .WithName(Command.Operation)
            .WithSummary("Govern one tool: enable or disable it, set its risk level (with a reason), approve a drifted definition, set its rate limit, keep its outputs as evidence.")
            .Produces<McpTool.Response>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status409Conflict);
}
