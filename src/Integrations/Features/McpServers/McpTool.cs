using System.Text.Json;
using System.Text.Json.Nodes;
using Dapper;
using Integrations.Common;
using Integrations.Pipeline.Governance;
using ModelContextProtocol;
using ModelContextProtocol.Protocol;
using Npgsql;

namespace Integrations.Features.McpServers;

/// <summary>
/// A tool of a registered MCP server, as stored in <c>mcp_tools</c> and as the tool slices answer.
/// tools.invoke may call a tool only when <see cref="Row.IsInvocable"/>: enabled, status active (its current
/// definition is the approved one, so <c>input_schema</c> is the pinned schema), on a live server.
/// </summary>
public static class McpTool
{
    public const string SubjectType = "mcp_tool";

    public const string Active = "active";
    public const string Drifted = "drifted";
    public const string Removed = "removed";

    public static readonly string[] Statuses = [Active, Drifted, Removed];

    public sealed record Response(
        Guid Id,
        Guid ServerId,
        string Name,
        string? Title,
        string? Description,
        JsonElement InputSchema,
        JsonElement? Annotations,
        [OneOf(typeof(McpTool), nameof(McpTool.Statuses))] string Status,
        bool Enabled,
        [OneOf(typeof(ToolRisk), nameof(ToolRisk.Levels))] string RiskLevel,
        bool RiskOverridden,
        string RiskReason,
        string DefinitionHash,
        string ApprovedHash,
        int? RateLimitPerMinute,
        DateTimeOffset DiscoveredAt,
        DateTimeOffset UpdatedAt,
        [OneOf(typeof(EvidencePolicy), nameof(EvidencePolicy.ToolChoices))] string Evidence);

    internal const string Columns = """
        t.id, t.server_id, t.name, t.title, t.description, t.input_schema::text AS input_schema, t.output_schema::text AS output_schema,
        t.annotations::text AS annotations,
        t.definition_hash, t.approved_hash, t.approved_definition::text AS approved_definition, t.risk_level, t.risk_overridden,
        t.risk_reason, t.enabled, t.status, t.rate_limit_per_minute, t.discovered_at, t.updated_at, t.evidence
        """;

    public sealed class Row
    {
        public Guid Id { get; init; }
        public Guid ServerId { get; init; }
        public required string Name { get; init; }
        public string? Title { get; init; }
        public string? Description { get; init; }
        public required string InputSchema { get; init; }
        public string? OutputSchema { get; init; }
        public string? Annotations { get; init; }
        public required string DefinitionHash { get; init; }
        public required string ApprovedHash { get; init; }
        public required string ApprovedDefinition { get; init; }
        public required string RiskLevel { get; init; }
        public bool RiskOverridden { get; init; }
        public required string RiskReason { get; init; }
        public bool Enabled { get; init; }
        public required string Status { get; init; }
        public int? RateLimitPerMinute { get; init; }
        public DateTimeOffset DiscoveredAt { get; init; }
        public DateTimeOffset UpdatedAt { get; init; }
        public string? Evidence { get; init; }

        public bool IsInvocable => Enabled && Status == Active && DefinitionHash == ApprovedHash;

        public Response ToResponse() => new(
            Id, ServerId, Name, Title, Description, Parse(InputSchema), Annotations is null ? null : Parse(Annotations),
            Status, Enabled, RiskLevel, RiskOverridden, RiskReason, DefinitionHash, ApprovedHash, RateLimitPerMinute,
            DiscoveredAt, UpdatedAt, Evidence ?? EvidencePolicy.ToolChoices[0]);
    }

    /// <summary>
    /// The pinned part of a stored tool's current definition, as SQL over <c>mcp_tools t</c>: the same shape
    /// <see cref="Definition.PinnedJson"/> has, so approving it pins what discovery hashed.
    /// </summary>
    internal const string CurrentDefinitionSql = """
        (jsonb_build_object('name', t.name, 'description', t.description, 'inputSchema', t.input_schema)
            || CASE WHEN t.output_schema IS NULL THEN jsonb_build_object() ELSE jsonb_build_object('outputSchema', t.output_schema) END)
        """;

    /// <summary>The live server's tools, locked for update when a slice is about to rewrite them.</summary>
    internal static async Task<List<Row>> ForServerAsync(NpgsqlConnection connection, string tenantId, Guid serverId, CancellationToken ct) =>
        (await connection.QueryAsync<Row>(new CommandDefinition(
            $"SELECT {Columns} FROM mcp_tools t WHERE t.tenant_id = @TenantId AND t.server_id = @ServerId ORDER BY t.name FOR UPDATE",
            new { TenantId = tenantId, ServerId = serverId }, cancellationToken: ct))).AsList();

    /// <summary>A tool seen for the first time: its definition is approved as seen (pinned), enabled as the caller decides.</summary>
    internal const string InsertSql = """
        INSERT INTO mcp_tools (id, tenant_id, server_id, name, title, description, input_schema, output_schema, annotations,
            definition_hash, approved_hash, approved_definition, risk_level, risk_reason, enabled)
        VALUES (@Id, @TenantId, @ServerId, @Name, @Title, @Description, @InputSchema::jsonb, @OutputSchema::jsonb, @Annotations::jsonb,
            @Hash, @Hash, @Pinned::jsonb, @RiskLevel, @RiskReason, @Enabled)
        """;

    internal sealed record NewTool(
        Guid Id, string TenantId, Guid ServerId, string Name, string? Title, string? Description, string InputSchema,
        string? OutputSchema, string? Annotations, string Hash, string Pinned, string RiskLevel, string RiskReason, bool Enabled);

    internal static NewTool InsertArgs(string tenantId, Guid serverId, Definition definition, bool enabled) => new(
        Ids.New(), tenantId, serverId, definition.Name, definition.Title, definition.Description,
        definition.InputSchemaJson, definition.OutputSchemaJson, definition.AnnotationsJson, definition.Hash, definition.PinnedJson,
        definition.RiskLevel, definition.RiskReason, enabled);

    /// <summary>
    /// A tool as a server announced it: its pinnable definition (name, description, inputSchema, and outputSchema when
    /// it has one — the MCP gateway serves it, and its descriptions reach the model as the tool's do), the hash of that
    /// definition's canonical JSON, and the classified risk. A tool without an outputSchema pins exactly what it pinned
    /// before the outputSchema was pinned (migration 0028), so its hash did not move; for one with an outputSchema see
    /// <see cref="Repins"/>.
    /// </summary>
    public sealed record Definition(
        string Name,
        string? Title,
        string? Description,
        string InputSchemaJson,
        string? OutputSchemaJson,
        string? AnnotationsJson,
        string PinnedJson,
        string Hash,
        string RiskLevel,
        string RiskReason,
        string? HashWithoutOutputSchema = null)
    {
        private static readonly JsonElement EmptyObjectSchema = JsonDocument.Parse("""{"type":"object"}""").RootElement.Clone();

        public static Definition From(Tool tool)
        {
            var schema = tool.InputSchema.ValueKind == JsonValueKind.Object ? tool.InputSchema : EmptyObjectSchema;
            var pinned = new JsonObject
            {
                ["name"] = tool.Name,
                ["description"] = tool.Description,
                ["inputSchema"] = JsonNode.Parse(schema.GetRawText()),
            };
            var output = tool.OutputSchema is { ValueKind: JsonValueKind.Object or JsonValueKind.True or JsonValueKind.False } announced ? announced.GetRawText() : null;
            var withoutOutputSchema = output is null ? null : CanonicalJson.Sha256(JsonSerializer.SerializeToElement(pinned));
            if (output is not null) pinned["outputSchema"] = JsonNode.Parse(output);
            var pinnedElement = JsonSerializer.SerializeToElement(pinned);
            var (risk, reason) = ToolRisk.Classify(tool.Name, tool.Description, tool.Annotations);
            return new Definition(
                tool.Name,
                tool.Title,
                tool.Description,
                schema.GetRawText(),
                output,
                tool.Annotations is null ? null : JsonSerializer.Serialize(tool.Annotations, McpJsonUtilities.DefaultOptions),
                System.Text.Encoding.UTF8.GetString(CanonicalJson.Serialize(pinnedElement)),
                CanonicalJson.Sha256(pinnedElement),
                risk,
                reason,
                withoutOutputSchema);
        }

        /// <summary>
        /// Whether this definition only re-pins <paramref name="tool"/>'s approval from before outputSchemas were pinned:
        /// the approval has no outputSchema, matches this definition without its outputSchema, and the outputSchema is
        /// the one the gateway already served (the last discovered). Such a pin moves to the new hash silently instead of
        /// making every tool with an outputSchema drift at once; an outputSchema that changed meanwhile is drift.
        /// </summary>
        public bool Repins(Row tool) =>
            HashWithoutOutputSchema is not null && HashWithoutOutputSchema == tool.ApprovedHash && Hash != tool.ApprovedHash
            && !JsonDocument.Parse(tool.ApprovedDefinition).RootElement.TryGetProperty("outputSchema", out _)
            && tool.OutputSchema is not null
            && CanonicalJson.Sha256(JsonDocument.Parse(tool.OutputSchema).RootElement) == CanonicalJson.Sha256(JsonDocument.Parse(OutputSchemaJson!).RootElement);

        /// <summary>Which parts of the pinned definition differ from an approved one (stored as canonical JSON).</summary>
        public IReadOnlyList<string> ChangedFrom(string approvedDefinitionJson) => Changed(approvedDefinitionJson, PinnedJson);

        /// <summary>Which parts of one pinned definition differ from another (both as stored: name, description, inputSchema, outputSchema).</summary>
        public static IReadOnlyList<string> Changed(string approvedDefinitionJson, string currentDefinitionJson)
        {
            var approved = JsonDocument.Parse(approvedDefinitionJson).RootElement;
            var current = JsonDocument.Parse(currentDefinitionJson).RootElement;
            var changed = new List<string>();
            var (was, now) = (approved.GetProperty("description"), current.GetProperty("description"));
            if (was.ValueKind != now.ValueKind || (now.ValueKind == JsonValueKind.String && was.GetString() != now.GetString())) changed.Add("description");
            if (CanonicalJson.Sha256(approved.GetProperty("inputSchema")) != CanonicalJson.Sha256(current.GetProperty("inputSchema")))
            {
                changed.Add("input_schema");
            }
            // An approval from before outputSchemas were pinned says nothing about them.
            var approvedPinsOutput = approved.TryGetProperty("outputSchema", out var wasOutput);
            var hasOutput = current.TryGetProperty("outputSchema", out var nowOutput);
            if (approvedPinsOutput && (!hasOutput || CanonicalJson.Sha256(wasOutput) != CanonicalJson.Sha256(nowOutput)))
            {
                changed.Add("output_schema");
            }
            return changed;
        }
    }

    private static JsonElement Parse(string json) => JsonDocument.Parse(json).RootElement.Clone();
}
