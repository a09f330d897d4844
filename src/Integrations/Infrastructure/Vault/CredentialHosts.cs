using System.Net;

namespace Integrations.Infrastructure.Vault;

/// <summary>
/// The hosts a credential may be sent to: exact host names or addresses, or <c>*.example.com</c> (any name below
/// example.com, not example.com itself). Nothing else is a pattern, so a list reads as exactly what it allows.
/// </summary>
public static class CredentialHosts
{
    public const int MaxEntries = 50;

    public const string Rule =
        "allowed_hosts: 1-50 entries, each a host name, an IP address or '*.' followed by a domain of at least two labels (e.g. api.openai.com, *.example.com).";

    /// <summary>The list in stored form (lower case, no trailing dot, no brackets, no duplicates), or null when an entry is not a host.</summary>
    public static string[]? Normalize(IReadOnlyList<string>? hosts)
    {
        if (hosts is null || hosts.Count is 0 or > MaxEntries) return null;
        var normalized = new List<string>();
        foreach (var raw in hosts)
        {
            var entry = NormalizeHost(raw ?? string.Empty);
            var name = entry.StartsWith("*.", StringComparison.Ordinal) ? entry[2..] : entry;
            var valid = entry.Length is > 0 and <= 253 && (entry.StartsWith("*.", StringComparison.Ordinal)
                ? name.Contains('.', StringComparison.Ordinal) && Uri.CheckHostName(name) == UriHostNameType.Dns
                : Uri.CheckHostName(name) != UriHostNameType.Unknown);
            if (!valid) return null;
            if (!normalized.Contains(entry)) normalized.Add(entry);
        }
        return [.. normalized];
    }

    public static bool Allows(IReadOnlyList<string> allowed, string host)
    {
        var target = NormalizeHost(host);
        foreach (var entry in allowed)
        {
            if (entry.StartsWith("*.", StringComparison.Ordinal)
                ? target.EndsWith(entry[1..], StringComparison.Ordinal) && target.Length > entry.Length - 1 && !IPAddress.TryParse(target, out _)
                : entry == target)
            {
                return true;
            }
        }
        return false;
    }

    private static string NormalizeHost(string host) => host.Trim().Trim('[', ']').TrimEnd('.').ToLowerInvariant();
}
