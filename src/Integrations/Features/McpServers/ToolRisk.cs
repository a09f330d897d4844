using Integrations.Features.Policies;
using ModelContextProtocol.Protocol;

namespace Integrations.Features.McpServers;

/// <summary>
/// Tool risk levels and the classification used at discovery (an admin may override it with tools.update).
/// A word of the tool's name that starts with a keyword stem sets the level, the highest match winning:
/// critical — delete, remove, drop, destroy, kill; high — write, execute, run, shell, eval, create;
/// medium — update, modify, set, put, post; low — read, get, list, search, query, fetch; no keyword → medium.
/// MCP annotations only raise: <c>destructiveHint: true</c> → at least high, <c>readOnlyHint: false</c> → at least medium;
/// <c>readOnlyHint: true</c> never lowers.
/// </summary>
public static class ToolRisk
{
    public const string Low = "low";
    public const string Medium = "medium";
    public const string High = "high";
    public const string Critical = "critical";

    public static IReadOnlyList<string> Levels => RiskLevels.All;

    // Stems, so "deletes", "deletion", "removal", "execution", "writing", "creation", "queries" match too.
    private static readonly (string Level, string[] Stems)[] Keywords =
    [
        (Critical, ["delet", "remov", "drop", "destroy", "kill"]),
        (High, ["writ", "execut", "run", "shell", "eval", "creat"]),
        (Medium, ["updat", "modif", "set", "put", "post"]),
        (Low, ["read", "get", "list", "search", "quer", "fetch"]),
    ];

    public static int Rank(string level) => RiskLevels.Rank(level);

    public static bool IsValid(string? level) => RiskLevels.IsValid(level);

    public static (string Level, string Reason) Classify(string toolName, ToolAnnotations? annotations)
    {
        var words = Words(toolName);
        string? level = null;
        var reason = "no risk keyword in the name: medium by default";
        foreach (var (candidate, stems) in Keywords)
        {
            var word = words.FirstOrDefault(w => stems.Any(s => w.StartsWith(s, StringComparison.Ordinal)));
            if (word is null) continue;
            level = candidate;
            reason = $"the name has '{word}': {candidate}";
            break;
        }
        level ??= Medium;

        if (annotations?.DestructiveHint == true && Rank(level) < Rank(High))
        {
            level = High;
            reason += "; destructiveHint raises it to high";
        }
        if (annotations?.ReadOnlyHint == false && Rank(level) < Rank(Medium))
        {
            level = Medium;
            reason += "; readOnlyHint false raises it to medium";
        }
        return (level, reason);
    }

    /// <summary>Splits <c>delete_file</c>, <c>get-sum</c>, <c>deleteFile</c>, <c>HTTPFetch</c> into lower-case words.</summary>
    internal static List<string> Words(string name)
    {
        var words = new List<string>();
        var current = new System.Text.StringBuilder();
        for (var i = 0; i < name.Length; i++)
        {
            var c = name[i];
            if (!char.IsLetterOrDigit(c))
            {
                Flush();
                continue;
            }
            var startsWord = char.IsUpper(c) && current.Length > 0
                && (char.IsLower(name[i - 1]) || (i + 1 < name.Length && char.IsLower(name[i + 1])));
            if (startsWord) Flush();
            current.Append(char.ToLowerInvariant(c));
        }
        Flush();
        return words;

        void Flush()
        {
            if (current.Length > 0) words.Add(current.ToString());
            current.Clear();
        }
    }
}
