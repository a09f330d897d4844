using Dapper;
using Integrations.Common;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using Integrations.Infrastructure.Mcp;
using Integrations.Infrastructure.Vault;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Npgsql;

namespace Integrations.Features.McpServers;

public static class DiscoverMcpServer
{
    /// <summary>The credential behavior resolves the server's own <c>credential_ref</c> (granted at registration).</summary>
    public sealed record Command(Guid Id) : IOperation<Response>, IAudited, INeedsCredential
    {
        public static string Operation => "mcp_servers.discover";
        public static string Scope => Scopes.Write;

        public CredentialAccessor CredentialAccessor => new(CredentialAccessor.McpServer, Id);
        public string? CredentialRef => null;
    }

    /// <summary>A tool whose definition no longer matches the approved one: what changed, and the hashes to approve.</summary>
    public sealed record Drift(McpTool.Response Tool, IReadOnlyList<string> Changed);

    /// <summary>
    /// The difference to the last discovery: <c>added</c> tools (stored disabled), <c>drifted</c> ones (not invocable until
    /// approved), <c>removed</c> ones, <c>restored</c> ones (back, with their approved definition), and how many stayed the same.
    /// </summary>
    public sealed record Response(
        McpServer.Response Server,
        IReadOnlyList<McpTool.Response> Added,
        IReadOnlyList<Drift> Drifted,
        IReadOnlyList<McpTool.Response> Removed,
        IReadOnlyList<McpTool.Response> Restored,
        int Unchanged);

    internal sealed class Handler(TenantSession session, AuditTrail audit, McpSessions sessions, CredentialContext credentials)
        : IRequestHandler<Command, Result<Response>>
    {
        private const string UpdateToolSql = """
            UPDATE mcp_tools SET title = @Title, description = @Description, input_schema = @InputSchema::jsonb, output_schema = @OutputSchema::jsonb,
                annotations = @Annotations::jsonb, definition_hash = @Hash, risk_level = @RiskLevel, risk_reason = @RiskReason,
                status = @Status, updated_at = now()
            WHERE tenant_id = @TenantId AND id = @Id
            """;

        private const string RemoveToolSql = """
            UPDATE mcp_tools SET status = 'removed', updated_at = now() WHERE tenant_id = @TenantId AND id = @Id
            """;

        // A discovery that succeeded proves the server answers: it is active again unless an admin disabled it.
        private const string UpdateServerSql = """
            UPDATE mcp_servers SET protocol_version = @ProtocolVersion, server_name = @ServerName, server_version = @ServerVersion,
                capabilities = @Capabilities::jsonb, discovered_at = now(), updated_at = now(),
                status = CASE WHEN status = 'disabled' THEN status ELSE 'active' END
            WHERE tenant_id = @TenantId AND id = @Id
            """;

        public async Task<Result<Response>> Handle(Command request, CancellationToken ct)
        {
            var server = await McpServer.FindAsync(session, request.Id, ct);
            if (server is null) return Error.NotFound("MCP server");
            var auth = McpServer.AuthFrom(credentials.Current, server.AuthHeader);
            if (!auth.IsSuccess) return auth.Error!;
            // No transaction stays open while the server is asked.
            await session.RollbackAsync();

            var described = await sessions.DescribeAsync(server.Endpoint(session.TenantId, auth.Value), ct);
            if (!described.IsSuccess) return described.Error!;
            var description = described.Value;

            // Concurrent discoveries of one server take turns on its row.
            if (await McpServer.FindAsync(session, request.Id, ct, forUpdate: true) is null) return Error.NotFound("MCP server");
            var connection = await session.ConnectionAsync(ct);
            var existing = (await McpTool.ForServerAsync(connection, session.TenantId, request.Id, ct)).ToDictionary(t => t.Name, StringComparer.Ordinal);
            var listed = description.Tools.Select(McpTool.Definition.From).ToList();

            var added = new List<Guid>();
            var drifted = new List<(Guid Id, IReadOnlyList<string> Changed)>();
            var restored = new List<Guid>();
            var removed = new List<Guid>();
            var unchanged = 0;
            try
            {
                foreach (var definition in listed)
                {
                    if (!existing.Remove(definition.Name, out var tool))
                    {
                        // New tools wait, disabled, until someone enables them.
                        var args = McpTool.InsertArgs(session.TenantId, request.Id, definition, enabled: false);
                        await connection.ExecuteAsync(new CommandDefinition(McpTool.InsertSql, args, cancellationToken: ct));
                        added.Add(args.Id);
                        continue;
                    }
                    var status = definition.Hash == tool.ApprovedHash ? McpTool.Active : McpTool.Drifted;
                    if (status == McpTool.Drifted && (tool.Status != McpTool.Drifted || tool.DefinitionHash != definition.Hash))
                    {
                        drifted.Add((tool.Id, definition.ChangedFrom(tool.ApprovedDefinition)));
                    }
                    else if (status == McpTool.Active && tool.Status != McpTool.Active) restored.Add(tool.Id);
                    else unchanged++;

                    await connection.ExecuteAsync(new CommandDefinition(UpdateToolSql, new
                    {
                        session.TenantId,
                        tool.Id,
                        definition.Title,
                        definition.Description,
                        InputSchema = definition.InputSchemaJson,
                        OutputSchema = definition.OutputSchemaJson,
                        Annotations = definition.AnnotationsJson,
                        definition.Hash,
                        RiskLevel = tool.RiskOverridden ? tool.RiskLevel : definition.RiskLevel,
                        RiskReason = tool.RiskOverridden ? tool.RiskReason : definition.RiskReason,
                        Status = status,
                    }, cancellationToken: ct));
                }
                foreach (var vanished in existing.Values.Where(t => t.Status != McpTool.Removed))
                {
                    await connection.ExecuteAsync(new CommandDefinition(RemoveToolSql, new { session.TenantId, vanished.Id }, cancellationToken: ct));
                    removed.Add(vanished.Id);
                }
            }
            catch (PostgresException e) when (e.SqlState is PostgresErrorCodes.UntranslatableCharacter or PostgresErrorCodes.InvalidTextRepresentation)
            {
                return Error.UpstreamError($"The MCP server at {new Uri(server.Url).Authority} announced tool definitions that cannot be stored (invalid JSON text).");
            }

            await connection.ExecuteAsync(new CommandDefinition(UpdateServerSql, new
            {
                session.TenantId,
                request.Id,
                description.ProtocolVersion,
                description.ServerName,
                description.ServerVersion,
                Capabilities = description.CapabilitiesJson,
            }, cancellationToken: ct));

            var tools = (await McpTool.ForServerAsync(connection, session.TenantId, request.Id, ct)).ToDictionary(t => t.Id, t => t.ToResponse());
            var current = (await McpServer.FindAsync(session, request.Id, ct))!;
            // A disabled server keeps no pooled session: discovery's one goes with it.
            if (current.Status == McpServer.Disabled) sessions.Close(session.TenantId, request.Id, forgetCircuit: false);
            var response = new Response(
                current.ToResponse(),
                added.ConvertAll(id => tools[id]),
                drifted.ConvertAll(d => new Drift(tools[d.Id], d.Changed)),
                removed.ConvertAll(id => tools[id]),
                restored.ConvertAll(id => tools[id]),
                unchanged);

            audit.Record(McpServer.SubjectType, request.Id.ToString(), new
            {
                Added = response.Added.Select(t => new { t.Name, t.RiskLevel, t.DefinitionHash }),
                Drifted = response.Drifted.Select(d => new { d.Tool.Name, d.Changed, d.Tool.ApprovedHash, d.Tool.DefinitionHash }),
                Removed = response.Removed.Select(t => t.Name),
                Restored = response.Restored.Select(t => t.Name),
                response.Unchanged,
                Credential = credentials.Current?.Reference ?? "none",
            });
            return response;
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPost("/{id:guid}/discover", async (Guid id, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id), http.RequestAborted)).ToHttp(http))
            .WithName(Command.Operation)
            .WithSummary("List the server's tools again and store the difference: new tools disabled, changed ones drifted, vanished ones removed.")
            .Produces<Response>()
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status422UnprocessableEntity)
            .ProducesProblem(StatusCodes.Status502BadGateway)
            .ProducesProblem(StatusCodes.Status504GatewayTimeout);
}
