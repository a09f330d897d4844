using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Dapper;
using Integrations.Features.Connectors;
using Integrations.Features.McpServers;
using Integrations.Features.Policies;
using Integrations.Features.VirtualServers;
using Integrations.Infrastructure.Database;
using Npgsql;

namespace Integrations.Features.McpGateway;

/// <summary>
/// A tenant's tools as the MCP gateway names them (<see cref="GatewayToolNames"/>): every tool of every live server,
/// whatever its state, so that a name stays with its tool while the tool is disabled or drifted and a call by that
/// name reaches the governed call (which refuses it with the rule) rather than "unknown tool". Held per replica while
/// the change listener runs; migration 0018's triggers announce <c>tools:&lt;tenant&gt;</c> on every change.
/// </summary>
public sealed class GatewayCatalog
{
    public const string ChangeKeyPrefix = "tools:";

    private const int MaxTenants = 10_000;

    private const string Sql = """
        SELECT t.id AS tool_id, t.name AS tool_name, t.title, t.description, t.input_schema::text AS input_schema,
               t.output_schema::text AS output_schema, t.annotations::text AS annotations, t.risk_level, t.enabled,
               t.status, t.definition_hash = t.approved_hash AS pinned,
               s.id AS server_id, s.name AS server_name, s.status AS server_status, s.created_at AS server_created_at
        FROM mcp_tools t JOIN mcp_servers s ON s.tenant_id = t.tenant_id AND s.id = t.server_id
        WHERE t.tenant_id = @TenantId AND s.deleted_at IS NULL;
        SELECT id, name, description, tool_ids, server_ids, name_patterns, risk_ceiling, created_at, updated_at
        FROM virtual_servers WHERE tenant_id = @TenantId;
        SELECT c.id, c.name, c.connector, c.status, c.disabled_actions, c.created_at, m.manifest::text AS manifest, m.status AS manifest_status
        FROM connections c LEFT JOIN connector_manifests m ON m.tenant_id = c.tenant_id AND m.name = c.connector
        WHERE c.tenant_id = @TenantId AND c.deleted_at IS NULL;
        """;

    private readonly ConcurrentDictionary<string, Snapshot> _cache = new(StringComparer.Ordinal);
    private readonly ChangeNotifications _changes;
    private long _generation;

    private readonly ConnectorCatalog _connectors;

    public GatewayCatalog(ChangeNotifications changes, ConnectorCatalog connectors)
    {
        _changes = changes;
        _connectors = connectors;
        changes.Changed += key =>
        {
            if (!key.StartsWith(ChangeKeyPrefix, StringComparison.Ordinal)) return;
            Interlocked.Increment(ref _generation);
            var tenant = key[ChangeKeyPrefix.Length..];
            if (tenant == "*") _cache.Clear();
            else _cache.TryRemove(tenant, out _);
        };
        changes.Reset += () =>
        {
            Interlocked.Increment(ref _generation);
            _cache.Clear();
        };
    }

    public bool TryGetCached(string tenantId, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out Snapshot? snapshot)
    {
        snapshot = null;
        return _changes.IsListening && _cache.TryGetValue(tenantId, out snapshot);
    }

    /// <summary>The tenant's catalog: this replica's copy, or read (and kept) when it has none or <paramref name="readThrough"/>.</summary>
    public async Task<Snapshot> GetAsync(NpgsqlConnection connection, string tenantId, CancellationToken ct, bool readThrough = false)
    {
        var listening = _changes.IsListening;
        if (listening && !readThrough && _cache.TryGetValue(tenantId, out var cached)) return cached;

        var generation = Interlocked.Read(ref _generation);
        List<Row> rows;
        Dictionary<string, VirtualServer.Selection> virtualServers;
        await using (var results = await connection.QueryMultipleAsync(new CommandDefinition(Sql, new { TenantId = tenantId }, cancellationToken: ct)))
        {
            rows = (await results.ReadAsync<Row>()).AsList();
            virtualServers = (await results.ReadAsync<VirtualServer.Row>()).ToDictionary(v => v.Name, v => v.ToSelection(), StringComparer.Ordinal);
            rows.AddRange((await results.ReadAsync<ConnectionRow>()).SelectMany(ActionRows));
        }
        rows.Sort((a, b) =>
        {
            var order = a.ServerCreatedAt.CompareTo(b.ServerCreatedAt);
            if (order == 0) order = a.ServerId.CompareTo(b.ServerId);
            return order != 0 ? order : string.CompareOrdinal(a.ToolName, b.ToolName);
        });
        var names = GatewayToolNames.Assign(rows, r => (r.ServerName, r.ToolName, r.ToolId));
        var tools = rows.Select((r, i) => r.ToTool(names[i])).OrderBy(t => t.Name, StringComparer.Ordinal).ToArray();
        var snapshot = new Snapshot(tools, tools.ToDictionary(t => t.Name, StringComparer.Ordinal), virtualServers);

        // Only keep what was read if no change arrived meanwhile; otherwise the next request reads again.
        if (listening && Interlocked.Read(ref _generation) == generation)
        {
            if (_cache.Count >= MaxTenants) _cache.Clear();
            _cache[tenantId] = snapshot;
        }
        return snapshot;
    }

    /// <summary>The tenant's tools in ordinal order of their gateway names (the order pages follow), and its virtual servers by name.</summary>
    public sealed record Snapshot(
        IReadOnlyList<GatewayTool> Tools, IReadOnlyDictionary<string, GatewayTool> ByName, IReadOnlyDictionary<string, VirtualServer.Selection> VirtualServers)
    {
        /// <summary>
        /// Up to <paramref name="limit"/> tools the policy lets the tenant call (and <paramref name="within"/> serves,
        /// when given), after the name <paramref name="after"/>.
        /// </summary>
        public (List<GatewayTool> Page, bool More) Callable(ToolPolicy policy, string? after, int limit, VirtualServer.Selection? within = null)
        {
            var page = new List<GatewayTool>(Math.Min(limit, Tools.Count));
            var start = 0;
            if (after is not null)
            {
                // Names are unique and sorted: the first name past the cursor, whether or not the cursor's tool still exists.
                var (low, high) = (0, Tools.Count);
                while (low < high)
                {
                    var middle = (low + high) / 2;
                    if (string.CompareOrdinal(Tools[middle].Name, after) <= 0) low = middle + 1;
                    else high = middle;
                }
                start = low;
            }
            for (var i = start; i < Tools.Count; i++)
            {
                if (!Tools[i].IsCallableUnder(policy) || (within is not null && !Tools[i].IsIn(within))) continue;
                if (page.Count == limit) return (page, true);
                page.Add(Tools[i]);
            }
            return (page, false);
        }
    }

    /// <summary>A connection's enabled actions are tools too, named <c>&lt;connection&gt;__&lt;action&gt;</c>; a drifted manifest's are not offered.</summary>
    private IEnumerable<Row> ActionRows(ConnectionRow connection)
    {
        var manifest = _connectors.FindBuiltIn(connection.Connector);
        if (manifest is null && connection.Manifest is not null)
        {
            using var document = JsonDocument.Parse(connection.Manifest);
            manifest = ConnectorManifest.Parse(document.RootElement).Value;
        }
        if (manifest is null) return [];
        return manifest.Actions.Select(action => new Row
        {
            ToolId = ActionToolId(connection.Id, action.Name),
            ToolName = action.Name,
            Description = action.Description,
            InputSchema = action.InputSchema.GetRawText(),
            Annotations = action.Access == "read" ? """{"readOnlyHint":true}""" : """{"readOnlyHint":false}""",
            RiskLevel = action.RiskLevel,
            Enabled = !connection.DisabledActions.Contains(action.Name),
            Status = McpTool.Active,
            Pinned = connection.ManifestStatus != Connector.Drifted,
            ServerId = connection.Id,
            ServerName = connection.Name,
            ServerStatus = connection.Status,
            ServerCreatedAt = connection.CreatedAt,
            Source = GatewayTool.ConnectionSource,
        });
    }

    /// <summary>A stable id for a connection's action (the tool id virtual servers and pages speak of): a name-based UUID of the two.</summary>
    public static Guid ActionToolId(Guid connectionId, string action)
    {
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes($"{connectionId:N}/{action}"));
        hash[6] = (byte)((hash[6] & 0x0F) | 0x80);
        hash[8] = (byte)((hash[8] & 0x3F) | 0x80);
        return new Guid(hash.AsSpan(0, 16), bigEndian: true);
    }

    internal sealed class ConnectionRow
    {
        public Guid Id { get; init; }
        public required string Name { get; init; }
        public required string Connector { get; init; }
        public required string Status { get; init; }
        public string[] DisabledActions { get; init; } = [];
        public DateTimeOffset CreatedAt { get; init; }
        public string? Manifest { get; init; }
        public string? ManifestStatus { get; init; }
    }

    internal sealed class Row
    {
        public Guid ToolId { get; init; }
        public required string ToolName { get; init; }
        public string? Title { get; init; }
        public string? Description { get; init; }
        public required string InputSchema { get; init; }
        public string? OutputSchema { get; init; }
        public string? Annotations { get; init; }
        public required string RiskLevel { get; init; }
        public bool Enabled { get; init; }
        public required string Status { get; init; }
        public bool Pinned { get; init; }
        public Guid ServerId { get; init; }
        public required string ServerName { get; init; }
        public required string ServerStatus { get; init; }
        public DateTimeOffset ServerCreatedAt { get; init; }
        public string Source { get; init; } = GatewayTool.McpServerSource;

        public GatewayTool ToTool(string name) => new(name, ServerId, ServerName, ToolId, ToolName, Title, Description,
            InputSchema, OutputSchema, Annotations, RiskLevel, Enabled && Status == McpTool.Active && Pinned && ServerStatus != McpServer.Disabled, Source);
    }
}

/// <summary>
/// A tool under its gateway name. <see cref="Offered"/>: enabled, active, its definition the approved one, its server
/// not disabled — the state rules of the governed call; the tenant's policy is the rest (<see cref="IsCallableUnder"/>).
/// <see cref="Source"/> says which governed call it leads to: an MCP server's tool (tools.invoke), or a connection's
/// action (connections.invoke; then the "server" is the connection and <see cref="ToolName"/> the action).
/// </summary>
public sealed record GatewayTool(
    string Name,
    Guid ServerId,
    string ServerName,
    Guid ToolId,
    string ToolName,
    string? Title,
    string? Description,
    string InputSchema,
    string? OutputSchema,
    string? Annotations,
    string RiskLevel,
    bool Offered,
    string Source = GatewayTool.McpServerSource)
{
    public const string McpServerSource = "mcp_server";
    public const string ConnectionSource = "connection";

    public bool IsConnectionAction => Source == ConnectionSource;

    public bool IsCallableUnder(ToolPolicy policy) => Offered && policy.Evaluate(ServerName, ServerId, ToolName, RiskLevel).Allowed;

    public bool IsIn(VirtualServer.Selection selection) => selection.Includes(ServerId, ServerName, ToolId, ToolName, RiskLevel);
}
