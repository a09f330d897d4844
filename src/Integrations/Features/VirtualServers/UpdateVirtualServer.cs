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

namespace Integrations.Features.VirtualServers;

/// <summary>virtual_servers.update: what is given replaces what was (a list given replaces the whole list; <c>[]</c> empties it).</summary>
public static class UpdateVirtualServer
{
    public sealed record Body(
        string? Description = null,
        IReadOnlyList<Guid>? ToolIds = null,
        IReadOnlyList<Guid>? ServerIds = null,
        IReadOnlyList<string>? NamePatterns = null,
        string? RiskCeiling = null);

    public sealed record Command(Guid Id, Body Changes) : IOperation<VirtualServer.Response>, IAudited
    {
        public static string Operation => "virtual_servers.update";
        public static string Scope => Scopes.Write;
    }

    internal sealed class Validator : AbstractValidator<Command>
    {
        public Validator()
        {
            VirtualServer.DescriptionRules(RuleFor(x => x.Changes.Description));
            VirtualServer.SelectorRules(this, x => x.Changes.ToolIds, x => x.Changes.ServerIds, x => x.Changes.NamePatterns, x => x.Changes.RiskCeiling);
        }
    }

    internal sealed class Handler(TenantSession session, AuditTrail audit) : IRequestHandler<Command, Result<VirtualServer.Response>>
    {
        private const string Sql = $"""
            UPDATE virtual_servers SET
                description = COALESCE(@Description, description),
                tool_ids = COALESCE(@ToolIds, tool_ids),
                server_ids = COALESCE(@ServerIds, server_ids),
                name_patterns = COALESCE(@NamePatterns, name_patterns),
                risk_ceiling = COALESCE(@RiskCeiling, risk_ceiling),
                updated_at = now()
            WHERE tenant_id = @TenantId AND id = @Id
            RETURNING {VirtualServer.Columns}
            """;

        public async Task<Result<VirtualServer.Response>> Handle(Command request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var changes = request.Changes;
            if (await VirtualServer.CheckReferencesAsync(connection, session.TenantId, changes.ToolIds ?? [], changes.ServerIds ?? [], ct) is { } invalid)
            {
                return invalid;
            }
            var row = await connection.QuerySingleOrDefaultAsync<VirtualServer.Row>(new CommandDefinition(Sql, new
            {
                session.TenantId,
                request.Id,
                changes.Description,
                ToolIds = changes.ToolIds?.Distinct().ToArray(),
                ServerIds = changes.ServerIds?.Distinct().ToArray(),
                NamePatterns = changes.NamePatterns?.ToArray(),
                changes.RiskCeiling,
            }, cancellationToken: ct));
            if (row is null) return Error.NotFound("virtual server");
            audit.Record(VirtualServer.SubjectType, row.Id.ToString(), row.AuditDetails());
            return row.ToResponse();
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPatch("/{id:guid}", async (Guid id, Body body, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id, body), http.RequestAborted)).ToHttp(http))
            .WithName(Command.Operation)
            .WithSummary("Change a virtual server's description, tools, selectors or risk ceiling.")
            .Produces<VirtualServer.Response>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status404NotFound);
}
