using System.Text.Json;
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
/// connectors.register: a tenant's own manifest for the generic http connector, checked against the published schema.
/// A new name is registered and pinned (<c>active</c>); the same manifest again changes nothing; a changed manifest under
/// a registered name is stored as the next revision but keeps the old pin, so the connector is <c>drifted</c> and its
/// actions are refused until connectors.approve pins the new one — as a changed tool definition is.
/// </summary>
public static class RegisterConnector
{
    public const string RegisteredAction = "connector.registered";
    public const string DriftedAction = "connector.drifted";

    public sealed record Command(JsonElement Manifest) : IOperation<Response>, IAudited
    {
        public static string Operation => "connectors.register";
        public static string Scope => Scopes.Write;
    }

    /// <param name="Change"><c>registered</c> (new name), <c>unchanged</c> (same manifest) or <c>drifted</c> (changed; approve it).</param>
    public sealed record Response(string Change, Connector.Response Connector);

    internal sealed class Validator : AbstractValidator<Command>
    {
        public Validator() =>
            RuleFor(x => x.Manifest).Must(m => m.ValueKind == JsonValueKind.Object).WithMessage("The manifest must be a JSON object.");
    }

    internal sealed class Handler(TenantSession session, AuditTrail audit, ConnectorCatalog catalog, CallerContext caller)
        : IRequestHandler<Command, Result<Response>>
    {
        private const string InsertSql = $"""
            INSERT INTO connector_manifests (id, tenant_id, name, version, manifest, manifest_hash, approved_hash, status)
            VALUES (@Id, @TenantId, @Name, @Version, @Manifest::jsonb, @Hash, @Hash, 'active')
            ON CONFLICT (tenant_id, name) DO NOTHING
            RETURNING {ConnectorCatalog.RegisteredColumns}
            """;

        private const string ChangeSql = $"""
            UPDATE connector_manifests
            SET version = @Version, manifest = @Manifest::jsonb, manifest_hash = @Hash, revision = revision + 1, updated_at = now(),
                status = CASE WHEN approved_hash = @Hash THEN 'active' ELSE 'drifted' END
            WHERE tenant_id = @TenantId AND name = @Name AND manifest_hash <> @Hash
            RETURNING {ConnectorCatalog.RegisteredColumns}
            """;

        private const string RevisionSql = """
            INSERT INTO connector_manifest_revisions (tenant_id, manifest_id, revision, version, manifest, manifest_hash, registered_by)
            VALUES (@TenantId, @Id, @Revision, @Version, @Manifest::jsonb, @Hash, @Actor)
            """;

        public async Task<Result<Response>> Handle(Command request, CancellationToken ct)
        {
            var parsed = ConnectorManifest.Parse(request.Manifest);
            if (!parsed.IsSuccess) return parsed.Error!;
            var manifest = parsed.Value;
            if (manifest.Connector != Connector.Http)
            {
                return Error.Validation("manifest.connector", $"A tenant registers manifests for the http connector only, not '{manifest.Connector}'.");
            }
            if (catalog.IsBuiltIn(manifest.Name)) return Error.Conflict($"'{manifest.Name}' is a built-in connector; choose another name.");

            var connection = await session.ConnectionAsync(ct);
            var args = new
            {
                Id = Ids.New(),
                session.TenantId,
                manifest.Name,
                manifest.Version,
                Manifest = manifest.Document.GetRawText(),
                manifest.Hash,
                caller.Required.Actor,
            };
            var change = "registered";
            var row = await connection.QuerySingleOrDefaultAsync<ConnectorCatalog.Registered>(new CommandDefinition(InsertSql, args, cancellationToken: ct));
            if (row is null)
            {
                row = await connection.QuerySingleOrDefaultAsync<ConnectorCatalog.Registered>(new CommandDefinition(ChangeSql, args, cancellationToken: ct));
                if (row is null)
                {
                    // Registering what is registered already changes nothing, but the attempt is on record like any write.
                    var same = (await ConnectorCatalog.FindRegisteredAsync(connection, session.TenantId, manifest.Name, ct))!;
                    audit.Record(Connector.SubjectType, manifest.Name, new { manifest.Name, Change = "unchanged", ManifestHash = manifest.Hash }, RegisteredAction);
                    return new Response("unchanged", Connector.ToResponse(same));
                }
                change = row.Status == Connector.Drifted ? "drifted" : "registered";
            }
            await connection.ExecuteAsync(new CommandDefinition(RevisionSql,
                new { session.TenantId, row.Id, row.Revision, manifest.Version, args.Manifest, manifest.Hash, args.Actor }, cancellationToken: ct));
            audit.Record(Connector.SubjectType, manifest.Name, new
            {
                manifest.Name,
                Change = change,
                manifest.Version,
                ManifestHash = manifest.Hash,
                row.ApprovedHash,
                row.Revision,
                Actions = manifest.Actions.Select(a => a.Name).ToArray(),
            }, change == "drifted" ? DriftedAction : RegisteredAction);
            return new Response(change, Connector.ToResponse(row));
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPost("/", async (Command command, IMediator mediator, HttpContext http) =>
                (await mediator.Send(command, http.RequestAborted)).ToHttp(http,
                    r => r.Change == "registered" && r.Connector.Revision == 1 ? TypedResults.Created($"/connectors/{r.Connector.Name}", r) : TypedResults.Ok(r)))
            .WithName(Command.Operation)
            .WithSummary("Register a manifest for the generic http connector (schemas/connector-manifest.schema.json). A changed manifest under the same name is drift: its actions are refused until approved.")
            .Produces<Response>(StatusCodes.Status201Created)
            .Produces<Response>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status409Conflict);
}
