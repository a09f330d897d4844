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
using Npgsql;

namespace Integrations.Features.VirtualServers;

public static class CreateVirtualServer
{
    public sealed record Command(
        string Name,
        string? Description = null,
        IReadOnlyList<Guid>? ToolIds = null,
        IReadOnlyList<Guid>? ServerIds = null,
        IReadOnlyList<string>? NamePatterns = null,
        string? RiskCeiling = null) : IOperation<VirtualServer.Response>, IAudited
    {
        public static string Operation => "virtual_servers.create";
        public static string Scope => Scopes.Write;
    }

    internal sealed class Validator : AbstractValidator<Command>
    {
        public Validator()
        {
            RuleFor(x => x.Name).NotEmpty().Matches(VirtualServer.NamePattern)
                .WithMessage("Name is 1-63 characters of a-z, 0-9, '_' and '-', starting with a letter or digit (it is a path segment: /mcp/{name}).");
            VirtualServer.DescriptionRules(RuleFor(x => x.Description));
            VirtualServer.SelectorRules(this, x => x.ToolIds, x => x.ServerIds, x => x.NamePatterns, x => x.RiskCeiling);
        }
    }

    internal sealed class Handler(TenantSession session, AuditTrail audit) : IRequestHandler<Command, Result<VirtualServer.Response>>
    {
        private const string Sql = $"""
            INSERT INTO virtual_servers (id, tenant_id, name, description, tool_ids, server_ids, name_patterns, risk_ceiling)
            VALUES (@Id, @TenantId, @Name, @Description, @ToolIds, @ServerIds, @NamePatterns, @RiskCeiling)
            ON CONFLICT (tenant_id, name) DO NOTHING
            RETURNING {VirtualServer.Columns}
            """;

        public async Task<Result<VirtualServer.Response>> Handle(Command request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var (toolIds, serverIds) = (request.ToolIds ?? [], request.ServerIds ?? []);
            if (await VirtualServer.CheckReferencesAsync(connection, session.TenantId, toolIds, serverIds, ct) is { } invalid) return invalid;

            var row = await connection.QuerySingleOrDefaultAsync<VirtualServer.Row>(new CommandDefinition(Sql, new
            {
                Id = Ids.New(),
                session.TenantId,
                request.Name,
                request.Description,
                ToolIds = toolIds.Distinct().ToArray(),
                ServerIds = serverIds.Distinct().ToArray(),
                NamePatterns = (request.NamePatterns ?? []).ToArray(),
                request.RiskCeiling,
            }, cancellationToken: ct));
            if (row is null) return VirtualServer.Duplicate(request.Name);
            audit.Record(VirtualServer.SubjectType, row.Id.ToString(), row.AuditDetails());
            return row.ToResponse();
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPost("/", async (Command command, IMediator mediator, HttpContext http) =>
                (await mediator.Send(command, http.RequestAborted)).ToHttp(http, r => TypedResults.Created($"/virtual-servers/{r.Id}", r)))
            .WithName(Command.Operation)
            .WithSummary("A named set of tools (by id, or by server, name pattern and risk ceiling) served at /mcp/{name}; it narrows the tenant's policy, never widens it.")
            .Produces<VirtualServer.Response>(StatusCodes.Status201Created)
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status409Conflict);
}
