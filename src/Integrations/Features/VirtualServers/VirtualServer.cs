using Dapper;
using FluentValidation;
using Integrations.Common;
using Integrations.Features.Policies;
using Npgsql;

namespace Integrations.Features.VirtualServers;

/// <summary>
/// A named subset of a tenant's tools, served at <c>/mcp/{name}</c>. A tool belongs to it when its id is in
/// <c>tool_ids</c>, or when it matches every selector given (<c>server_ids</c>; <c>name_patterns</c>, written as the
/// tool policy's lists are: <c>tool</c> or <c>server/tool</c>, <c>*</c> any run); with no ids and no selectors, every
/// tool. <c>risk_ceiling</c> then drops what is riskier. The tenant's policy applies on top, so a virtual server only
/// ever narrows what the tenant may call.
/// </summary>
public static class VirtualServer
{
    public const string SubjectType = "virtual_server";

    public const string NamePattern = "^[a-z0-9][a-z0-9_-]{0,62}$";

    public sealed record Response(
        Guid Id,
        string Name,
        string? Description,
        IReadOnlyList<Guid> ToolIds,
        IReadOnlyList<Guid> ServerIds,
        IReadOnlyList<string> NamePatterns,
        string? RiskCeiling,
        DateTimeOffset CreatedAt,
        DateTimeOffset UpdatedAt);

    internal const string Columns = "id, name, description, tool_ids, server_ids, name_patterns, risk_ceiling, created_at, updated_at";

    internal sealed class Row
    {
        public Guid Id { get; init; }
        public required string Name { get; init; }
        public string? Description { get; init; }
        public Guid[] ToolIds { get; init; } = [];
        public Guid[] ServerIds { get; init; } = [];
        public string[] NamePatterns { get; init; } = [];
        public string? RiskCeiling { get; init; }
        public DateTimeOffset CreatedAt { get; init; }
        public DateTimeOffset UpdatedAt { get; init; }

        public Response ToResponse() => new(Id, Name, Description, ToolIds, ServerIds, NamePatterns, RiskCeiling, CreatedAt, UpdatedAt);

        public object AuditDetails() => new { Name, ToolIds, ServerIds, NamePatterns, RiskCeiling };

        public Selection ToSelection() => new(ToolIds.ToHashSet(), ServerIds.ToHashSet(), NamePatterns, RiskCeiling);
    }

    /// <summary>Which tools a virtual server serves (before the tenant's policy, which applies in any case).</summary>
    public sealed record Selection(IReadOnlySet<Guid> ToolIds, IReadOnlySet<Guid> ServerIds, IReadOnlyList<string> NamePatterns, string? RiskCeiling)
    {
        public bool Includes(Guid serverId, string serverName, Guid toolId, string toolName, string riskLevel)
        {
            if (RiskCeiling is not null && RiskLevels.Rank(riskLevel) > RiskLevels.Rank(RiskCeiling)) return false;
            if (ToolIds.Contains(toolId)) return true;
            var selects = ServerIds.Count > 0 || NamePatterns.Count > 0;
            if (!selects) return ToolIds.Count == 0;
            return (ServerIds.Count == 0 || ServerIds.Contains(serverId))
                && (NamePatterns.Count == 0 || NamePatterns.Any(p => ToolPolicy.Matches(p, serverName, serverId, toolName)));
        }
    }

    internal const int MaxEntries = 200;

    internal static void DescriptionRules<T>(IRuleBuilder<T, string?> rule) =>
        rule.MaximumLength(1000).WithMessage("Description may be at most 1000 characters.");

    internal static void SelectorRules<T>(
        AbstractValidator<T> validator, System.Linq.Expressions.Expression<Func<T, IReadOnlyList<Guid>?>> toolIds,
        System.Linq.Expressions.Expression<Func<T, IReadOnlyList<Guid>?>> serverIds,
        System.Linq.Expressions.Expression<Func<T, IReadOnlyList<string>?>> namePatterns,
        System.Linq.Expressions.Expression<Func<T, string?>> riskCeiling)
    {
        validator.RuleFor(toolIds).Must(ids => ids is null || ids.Count <= MaxEntries).WithMessage($"At most {MaxEntries} tool ids.");
        validator.RuleFor(serverIds).Must(ids => ids is null || ids.Count <= MaxEntries).WithMessage($"At most {MaxEntries} server ids.");
        validator.RuleFor(namePatterns).Must(p => p is null || p.Count <= MaxEntries).WithMessage($"At most {MaxEntries} name patterns.");
        validator.RuleFor(namePatterns).Must(p => p is null || p.All(x => !string.IsNullOrWhiteSpace(x) && x.Length <= 300))
            .WithMessage("A name pattern is 1-300 characters.");
        validator.RuleFor(riskCeiling).Must(r => r is null || RiskLevels.IsValid(r))
            .WithMessage($"Risk ceiling must be one of: {string.Join(", ", RiskLevels.All)}.");
    }

    /// <summary>The ids among <paramref name="toolIds"/> and <paramref name="serverIds"/> that are not the tenant's live tools and servers.</summary>
    internal static async Task<Error?> CheckReferencesAsync(
        NpgsqlConnection connection, string tenantId, IReadOnlyList<Guid> toolIds, IReadOnlyList<Guid> serverIds, CancellationToken ct)
    {
        const string Sql = """
            SELECT (SELECT count(*) FROM mcp_tools t JOIN mcp_servers s ON s.tenant_id = t.tenant_id AND s.id = t.server_id
                    WHERE t.tenant_id = @TenantId AND t.id = ANY(@ToolIds) AND s.deleted_at IS NULL) AS tools,
                   (SELECT count(*) FROM mcp_servers WHERE tenant_id = @TenantId AND id = ANY(@ServerIds) AND deleted_at IS NULL) AS servers
            """;
        var distinctTools = toolIds.Distinct().ToArray();
        var distinctServers = serverIds.Distinct().ToArray();
        var (tools, servers) = await connection.QuerySingleAsync<(long, long)>(new CommandDefinition(Sql,
            new { TenantId = tenantId, ToolIds = distinctTools, ServerIds = distinctServers }, cancellationToken: ct));
        var errors = new Dictionary<string, string[]>();
        if (tools != distinctTools.Length) errors["tool_ids"] = ["Every tool id must be one of your MCP servers' tools."];
        if (servers != distinctServers.Length) errors["server_ids"] = ["Every server id must be one of your MCP servers."];
        return errors.Count == 0 ? null : Error.Validation(errors);
    }

    internal static Error Duplicate(string name) => Error.Conflict($"A virtual server named '{name}' already exists.");
}
