using Dapper;
using Integrations.Common;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Mcp;
using Npgsql;

namespace Integrations.Features.McpServers;

/// <summary>A tool whose definition no longer matches the approved one: what changed, and the hashes to approve.</summary>
public sealed record ToolDrift(McpTool.Response Tool, IReadOnlyList<string> Changed);

/// <summary>
/// A server's tools against the last discovery: <c>added</c> tools (stored disabled), <c>drifted</c> ones (not invocable
/// until approved), <c>removed</c> ones, <c>restored</c> ones (back, with their approved definition), and how many stayed
/// the same — what mcp_servers.discover and mcp_servers.update answer.
/// </summary>
public sealed record ToolChanges(
    McpServer.Response Server,
    IReadOnlyList<McpTool.Response> Added,
    IReadOnlyList<ToolDrift> Drifted,
    IReadOnlyList<McpTool.Response> Removed,
    IReadOnlyList<McpTool.Response> Restored,
    int Unchanged);

/// <summary>
/// What discovery and mcp_servers.update share: a server's tool list as it answered now, stored as the difference to
/// the last one — new tools inserted disabled, changed ones drifted (not invocable until approved), vanished ones
/// removed, returned ones restored with their approved definition; approvals and risk overrides kept where a
/// definition did not change — and the server's protocol facts updated. The caller holds the server's row lock
/// (<see cref="McpServer.FindAsync"/> with <c>forUpdate</c>) in the request's transaction and audits the result.
/// </summary>
internal static class ToolDiscovery
{
    private const string UpdateToolSql = """
        UPDATE mcp_tools SET title = @Title, description = @Description, input_schema = @InputSchema::jsonb, output_schema = @OutputSchema::jsonb,
            annotations = @Annotations::jsonb, definition_hash = @Hash, risk_level = @RiskLevel, risk_reason = @RiskReason,
            approved_hash = coalesce(@RepinnedHash, approved_hash), approved_definition = coalesce(@RepinnedDefinition::jsonb, approved_definition),
            status = @Status, updated_at = now()
        WHERE tenant_id = @TenantId AND id = @Id
        """;

    private const string RemoveToolSql = """
        UPDATE mcp_tools SET status = 'removed', updated_at = now() WHERE tenant_id = @TenantId AND id = @Id
        """;

    // A discovery that succeeded proves the server answers: it is active again unless an admin disabled it.
    private const string UpdateServerSql = """
        UPDATE mcp_servers SET transport = @Transport, protocol_version = @ProtocolVersion, server_name = @ServerName, server_version = @ServerVersion,
            capabilities = @Capabilities::jsonb, discovered_at = now(), updated_at = now(),
            status = CASE WHEN status = 'disabled' THEN status ELSE 'active' END
        WHERE tenant_id = @TenantId AND id = @Id
        """;

    public static async Task<Result<ToolChanges>> StoreAsync(
        TenantSession session, McpSessions sessions, Guid serverId, McpServerDescription description, CancellationToken ct)
    {
        var connection = await session.ConnectionAsync(ct);
        var existing = (await McpTool.ForServerAsync(connection, session.TenantId, serverId, ct)).ToDictionary(t => t.Name, StringComparer.Ordinal);
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
                    var args = McpTool.InsertArgs(session.TenantId, serverId, definition, enabled: false);
                    await connection.ExecuteAsync(new CommandDefinition(McpTool.InsertSql, args, cancellationToken: ct));
                    added.Add(args.Id);
                    continue;
                }
                var repinned = definition.Repins(tool);
                var status = repinned || definition.Hash == tool.ApprovedHash ? McpTool.Active : McpTool.Drifted;
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
                    RepinnedHash = repinned ? definition.Hash : null,
                    RepinnedDefinition = repinned ? definition.PinnedJson : null,
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
            var server = await McpServer.FindAsync(session, serverId, ct);
            return Error.UpstreamError($"The MCP server at {(server is null ? "its URL" : new Uri(server.Url).Authority)} announced tool definitions that cannot be stored (invalid JSON text).");
        }

        await connection.ExecuteAsync(new CommandDefinition(UpdateServerSql, new
        {
            session.TenantId,
            Id = serverId,
            description.Transport,
            description.ProtocolVersion,
            description.ServerName,
            description.ServerVersion,
            Capabilities = description.CapabilitiesJson,
        }, cancellationToken: ct));

        var tools = (await McpTool.ForServerAsync(connection, session.TenantId, serverId, ct)).ToDictionary(t => t.Id, t => t.ToResponse());
        var current = (await McpServer.FindAsync(session, serverId, ct))!;
        // A disabled server keeps no pooled session: discovery's one goes with it.
        if (current.Status == McpServer.Disabled) sessions.Close(session.TenantId, serverId, forgetCircuit: false);
        return new ToolChanges(
            current.ToResponse(),
            added.ConvertAll(id => tools[id]),
            drifted.ConvertAll(d => new ToolDrift(tools[d.Id], d.Changed)),
            removed.ConvertAll(id => tools[id]),
            restored.ConvertAll(id => tools[id]),
            unchanged);
    }
}
