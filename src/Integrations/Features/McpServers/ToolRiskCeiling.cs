using Npgsql;

namespace Integrations.Features.McpServers;

/// <summary>
/// The highest tool risk a tenant accepts without explicit allowance: tools found at registration are enabled
/// only within it, and tools.invoke refuses tools above it unless they are allowed explicitly.
/// There is no policies table yet, so every tenant has the default. The policies issue backs this one method
/// with <c>tool_policies</c> (its risk ceiling column, read on the caller's connection so row-level security applies);
/// callers already pass the request connection for that.
/// </summary>
public sealed class ToolRiskCeiling
{
    public const string Default = ToolRisk.Medium;

    public Task<string> ForTenantAsync(NpgsqlConnection connection, string tenantId, CancellationToken ct) =>
        Task.FromResult(Default);
}
