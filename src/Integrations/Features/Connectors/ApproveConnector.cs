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

namespace Integrations.Features.Connectors;

/// <summary>
/// connectors.approve: pins a registered manifest's current revision, so a drifted connector's actions can be called
/// again. The caller names the hash it reviewed; a manifest that changed again since is not approved by mistake.
/// </summary>
public static class ApproveConnector
{
    public const string ApprovedAction = "connector.approved";

    public sealed record Body(string ManifestHash);

    public sealed record Command(string Name, string ManifestHash) : IOperation<Connector.Response>, IAudited
    {
        public static string Operation => "connectors.approve";
        public static string Scope => Scopes.Write;
    }

    internal sealed class Validator : AbstractValidator<Command>
    {
        public Validator() => RuleFor(x => x.ManifestHash).NotEmpty().Length(64);
    }

    internal sealed class Handler(TenantSession session, AuditTrail audit) : IRequestHandler<Command, Result<Connector.Response>>
    {
        private const string Sql = $"""
            UPDATE connector_manifests SET approved_hash = manifest_hash, status = 'active', updated_at = now()
            WHERE tenant_id = @TenantId AND name = @Name AND manifest_hash = @ManifestHash
            RETURNING {ConnectorCatalog.RegisteredColumns}
            """;

        public async Task<Result<Connector.Response>> Handle(Command request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var row = await connection.QuerySingleOrDefaultAsync<ConnectorCatalog.Registered>(new CommandDefinition(Sql,
                new { session.TenantId, request.Name, request.ManifestHash }, cancellationToken: ct));
            if (row is null)
            {
                var current = await ConnectorCatalog.FindRegisteredAsync(connection, session.TenantId, request.Name, ct);
                return current is null
                    ? Error.NotFound("connector")
                    : Error.Conflict($"The manifest of '{request.Name}' is now {current.ManifestHash}, not the one named; review it and approve that hash.");
            }
            audit.Record(Connector.SubjectType, row.Name, new { row.Name, row.Version, ApprovedHash = row.ManifestHash, row.Revision }, ApprovedAction);
            return Connector.ToResponse(row);
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPost("/{name}/approve", async (string name, Body body, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(name, body.ManifestHash), http.RequestAborted)).ToHttp(http))
            .WithName(Command.Operation)
            .WithSummary("Approve a registered manifest's current revision (by its hash): a drifted connector's actions can be called again.")
            .Produces<Connector.Response>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status409Conflict);
}
