using Integrations.Common;
namespace Integrations.Features.Policies;

public static class RiskLevels
{
    public static readonly string[] All = ["low", "medium", "high", "critical"];

    public static int Rank(string level) => Array.IndexOf(All, level);

    public static bool IsValid(string? level) => level is not null && Rank(level) >= 0;
}

public sealed record PolicyDecision(bool Allowed, string? Rule, string? Reason)
{
    public static readonly PolicyDecision Allow = new(true, null, null);

    public static PolicyDecision Deny(string rule, string reason) => new(false, rule, reason);
}

/// <summary>
/// A tenant's tool policy. List entries are a tool name (any server) or <c>server/tool</c>, where the server is
/// named by its name or id; <c>*</c> matches any run of characters.
/// </summary>
public sealed record ToolPolicy(
    [OneOf(typeof(RiskLevels), nameof(RiskLevels.All))] string RiskCeiling,
    IReadOnlyList<string> AllowList,
    IReadOnlyList<string> DenyList,
    int? DefaultRateLimitPerMinute,
    int? TenantRateLimitPerMinute,
    DateTimeOffset? UpdatedAt)
{
    public static readonly ToolPolicy Default = new("medium", [], [], null, null, null);

    /// <summary>The deny list wins; then a risk above the ceiling is refused unless the tool is explicitly allowed.</summary>
    public PolicyDecision Evaluate(string serverName, Guid serverId, string toolName, string riskLevel)
    {
        if (DenyList.FirstOrDefault(p => Matches(p, serverName, serverId, toolName)) is { } denied)
        {
            return PolicyDecision.Deny("deny_list", $"The tool '{toolName}' is on the tenant's deny list ('{denied}').");
        }
        if (RiskLevels.Rank(riskLevel) > RiskLevels.Rank(RiskCeiling) && !IsExplicitlyAllowed(serverName, serverId, toolName))
        {
            return PolicyDecision.Deny("risk_ceiling",
                $"The tool '{toolName}' is {riskLevel} risk, above the tenant's ceiling '{RiskCeiling}', and not on the allow list.");
        }
        return PolicyDecision.Allow;
    }

    public bool IsExplicitlyAllowed(string serverName, Guid serverId, string toolName) =>
        AllowList.Any(p => Matches(p, serverName, serverId, toolName));

    public static bool Matches(string pattern, string serverName, Guid serverId, string toolName)
    {
        var slash = pattern.IndexOf('/');
        if (slash < 0) return Glob(pattern, toolName);
        var serverPattern = pattern.AsSpan(0, slash);
        return (Glob(serverPattern, serverName) || Glob(serverPattern, serverId.ToString())) && Glob(pattern.AsSpan(slash + 1), toolName);
    }

    private static bool Glob(ReadOnlySpan<char> pattern, ReadOnlySpan<char> text)
    {
        var star = pattern.IndexOf('*');
        if (star < 0) return pattern.Equals(text, StringComparison.Ordinal);
        if (!text.StartsWith(pattern[..star], StringComparison.Ordinal)) return false;
        var restPattern = pattern[(star + 1)..];
        for (var i = star; i <= text.Length; i++)
        {
            if (Glob(restPattern, text[i..])) return true;
        }
        return false;
    }
}
