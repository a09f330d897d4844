using System.Text.Json;
using Dapper;
using FluentValidation;
using Integrations.Common;
using Integrations.Features.Connectors.Adapters;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using Integrations.Infrastructure.Vault;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using NJsonSchema;

namespace Integrations.Features.Connectors;

/// <summary>
/// connections.create (the connector contract's <i>auth</i>): binds a connector to a configuration — valid against the
/// manifest's configuration schema, every address in it through the SSRF guard — and a credential reference, which is
/// attached (granted) to the connection as to any other accessor. A connector that needs a secret needs a reference.
/// </summary>
public static class CreateConnection
{
    public sealed record Command(
        string Name,
        string Connector,
        JsonElement? Configuration = null,
        string? CredentialRef = null,
        IReadOnlyList<string>? DisabledActions = null,
        int? RateLimitPerMinute = null) : IOperation<Connection.Response>, IAudited
    {
        public static string Operation => "connections.create";
        public static string Scope => Scopes.Write;
    }

    internal sealed class Validator : AbstractValidator<Command>
    {
        public Validator(CallerContext caller)
        {
            RuleFor(x => x.Name).NotEmpty().Matches(Connectors.Connector.NamePattern)
                .WithMessage("Name is 1-63 characters of a-z, 0-9, '_' and '-', starting with a letter (it names the gateway tools: <connection>__<action>).");
            RuleFor(x => x.Connector).NotEmpty();
            RuleFor(x => x.Configuration).Must(c => c is null || c.Value.ValueKind is JsonValueKind.Object or JsonValueKind.Null)
                .WithMessage("The configuration must be a JSON object.");
            RuleFor(x => x.CredentialRef).Must((_, value, context) =>
            {
                if (value is null || CredentialReference.TryParse(value, caller.TenantId, systemScope: false, out CredentialReference? _, out var error)) return true;
                context.MessageFormatter.AppendArgument("Reason", error);
                return false;
            }).WithMessage("{Reason}");
            RuleFor(x => x.DisabledActions).Must(a => a is null || a.Count <= 100);
            RuleFor(x => x.RateLimitPerMinute).InclusiveBetween(1, 100_000);
        }
    }

    internal sealed class Handler(TenantSession session, AuditTrail audit, ConnectorCatalog catalog, ConnectorAdapters adapters, CredentialGrants grants)
        : IRequestHandler<Command, Result<Connection.Response>>
    {
        private const string Sql = $"""
            INSERT INTO connections (id, tenant_id, name, connector, configuration, credential_ref, disabled_actions, rate_limit_per_minute)
            SELECT @Id, @TenantId, @Name, @Connector, @Configuration::jsonb, @CredentialRef, @DisabledActions, @RateLimitPerMinute
            WHERE NOT EXISTS (SELECT FROM connections WHERE tenant_id = @TenantId AND name = @Name AND deleted_at IS NULL)
            RETURNING {Connection.Columns}
            """;

        public async Task<Result<Connection.Response>> Handle(Command request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var found = await catalog.FindAsync(connection, session.TenantId, request.Connector, ct);
            if (found is not { } connector) return Error.Validation("connector", $"No connector is named '{request.Connector}'; GET /connectors lists them.");
            var manifest = connector.Manifest;
            var configuration = request.Configuration is { ValueKind: JsonValueKind.Object } given ? given : JsonDocument.Parse("{}").RootElement;

            var schema = await JsonSchema.FromJsonAsync(manifest.Configuration.GetRawText(), ct);
            var problems = schema.Validate(configuration.GetRawText());
            if (problems.Count > 0)
            {
                return Error.Validation(problems.GroupBy(p => "configuration" + (p.Path is { Length: > 0 } path ? "." + path.TrimStart('#', '/').Replace('/', '.') : ""))
                    .ToDictionary(g => g.Key, g => g.Select(p => $"{p.Kind}{(p.Property is null ? "" : $" ({p.Property})")}.").ToArray()),
                    $"The configuration does not match the configuration schema of '{manifest.Name}'.");
            }
            if (request.CredentialRef is null && !manifest.CredentialTypes.Contains(ConnectorManifest.NoCredential))
            {
                return Error.Validation("credential_ref", $"The connector '{manifest.Name}' needs a credential ({string.Join(", ", manifest.CredentialTypes)}).");
            }
            var unknown = (request.DisabledActions ?? []).Where(a => manifest.Action(a) is null).ToList();
            if (unknown.Count > 0) return Error.Validation("disabled_actions", $"The connector has no action named {string.Join(", ", unknown)}.");

            var adapter = adapters.For(manifest.Connector);
            var id = Ids.New();
            if (await adapter.CheckConfigurationAsync(new ConnectionEndpoint(id, session.TenantId, request.Name, configuration), ct) is { } refused) return refused;

            var row = await connection.QuerySingleOrDefaultAsync<Connection.Row>(new CommandDefinition(Sql, new
            {
                Id = id,
                session.TenantId,
                request.Name,
                Connector = manifest.Name,
                Configuration = configuration.GetRawText(),
                request.CredentialRef,
                DisabledActions = (request.DisabledActions ?? []).Distinct().ToArray(),
                request.RateLimitPerMinute,
            }, cancellationToken: ct));
            if (row is null) return Error.Conflict($"A connection named '{request.Name}' exists.");
            if (await grants.AttachAsync(Connection.AccessorOf(row.Id), request.CredentialRef, ct) is { } credentialError) return credentialError;
            audit.Record(Connection.SubjectType, row.Id.ToString(), new
            {
                row.Name,
                row.Connector,
                ManifestHash = manifest.Hash,
                CredentialRef = row.CredentialRef is null ? null : CredentialReference.Describe(row.CredentialRef),
                row.DisabledActions,
            });
            return row.ToResponse();
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPost("/", async (Command command, IMediator mediator, HttpContext http) =>
                (await mediator.Send(command, http.RequestAborted)).ToHttp(http, r => TypedResults.Created($"/connections/{r.Id}", r)))
            .WithName(Command.Operation)
            .WithSummary("Connect a connector: its configuration (checked against the manifest and the SSRF guard) and a credential reference from the vault (granted to the connection).")
            .Produces<Connection.Response>(StatusCodes.Status201Created)
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status409Conflict)
            .ProducesProblem(StatusCodes.Status422UnprocessableEntity);
}
