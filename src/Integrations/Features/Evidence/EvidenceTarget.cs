using Integrations.Common;
using Integrations.Features.Datasources;
using Integrations.Features.McpServers;
using Integrations.Pipeline.Governance;

namespace Integrations.Features.Evidence;

/// <summary>The evidence policy of one MCP server or datasource.</summary>
/// <param name="Target">mcp-servers or datasources.</param>
public sealed record TargetEvidencePolicy([OneOf(typeof(EvidenceTarget), nameof(EvidenceTarget.Kinds))] string Target, Guid Id, EvidencePolicy Policy);


/// <summary>What may carry an evidence policy, as the routes name it, and the table that holds it.</summary>
public static class EvidenceTarget
{
    public const string McpServers = "mcp-servers";
    public const string Datasources = "datasources";

    public static readonly string[] Kinds = [McpServers, Datasources];

    /// <summary>The table of <paramref name="kind"/> and the subject type its audit events name, or null for an unknown kind.</summary>
    internal static (string Table, string SubjectType)? Of(string kind) => kind switch
    {
        McpServers => ("mcp_servers", McpServer.SubjectType),
        Datasources => ("datasources", Datasource.SubjectType),
        _ => null,
    };
}
