using System.Buffers;

namespace Integrations.Features.McpGateway;

/// <summary>
/// How the gateway names a tool: <c>&lt;server&gt;__&lt;tool&gt;</c>, made a valid MCP tool name (1-128 characters of
/// <c>A-Z a-z 0-9 _ - .</c>): every other character becomes <c>_</c> and the name is cut at 128 characters. When two
/// tools of a tenant come out the same, the tool of the server registered first (then the lower server id, then the
/// tool name in ordinal order) keeps the name and each later one gets <c>-</c> and the first 8 hex digits of its tool id
/// appended (all 32 should even that be taken), so a name never moves to another tool while both exist.
/// </summary>
public static class GatewayToolNames
{
    public const int MaxLength = 128;
    public const string Separator = "__";

    private static readonly SearchValues<char> Allowed =
        SearchValues.Create("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.");

    public static string Candidate(string serverName, string toolName) => Cut(Part(serverName) + Separator + Part(toolName), MaxLength);

    /// <summary>
    /// Names for <paramref name="tools"/>, which must come in the order that decides collisions
    /// (server created first, server id, tool name); the result is in the same order.
    /// </summary>
    public static string[] Assign<T>(IReadOnlyList<T> tools, Func<T, (string Server, string Tool, Guid ToolId)> describe)
    {
        var names = new string[tools.Count];
        var taken = new HashSet<string>(tools.Count, StringComparer.Ordinal);
        for (var i = 0; i < tools.Count; i++)
        {
            var (server, tool, toolId) = describe(tools[i]);
            var candidate = Candidate(server, tool);
            var name = candidate;
            if (!taken.Add(name))
            {
                var hex = toolId.ToString("N");
                name = Cut(candidate, MaxLength - 9) + "-" + hex[..8];
                if (!taken.Add(name))
                {
                    name = Cut(candidate, MaxLength - 33) + "-" + hex;
                    taken.Add(name);
                }
            }
            names[i] = name;
        }
        return names;
    }

    private static string Part(string text)
    {
        if (text.Length == 0) return "_";
        if (!text.AsSpan().ContainsAnyExcept(Allowed)) return text;
        return string.Create(text.Length, text, static (span, source) =>
        {
            for (var i = 0; i < source.Length; i++) span[i] = Allowed.Contains(source[i]) ? source[i] : '_';
        });
    }

    private static string Cut(string name, int length) => name.Length <= length ? name : name[..length];
}
