using Integrations.Features.Policies;
using ModelContextProtocol.Protocol;

namespace Integrations.Features.McpServers;

/// <summary>
/// Tool risk levels and the classification used at discovery (an admin may override it with tools.update).
/// Names are read as words, not as strings: <c>dropbox_search</c> has no "drop" and <c>runtime_status</c> no "run".
/// <list type="number">
/// <item>The name's action verbs decide: the first word that is a known verb (a service prefix before it, such as
/// <c>github_</c> or <c>slack_</c>, is skipped; words after it are its objects, so <c>get_post</c> reads a post and
/// <c>list_deleted_files</c> deletes nothing), and every known verb right after a conjunction (<c>get_or_delete</c>).
/// The highest of them wins. A verb counts in its base form (<c>delete</c>) or as its noun (<c>deletion</c>).</item>
/// <item>A name without a known verb: the description's first word, as a verb (<c>Deletes the file at path</c>).</item>
/// <item>Neither: low when the server marks the tool <c>readOnlyHint: true</c>, otherwise medium.</item>
/// </list>
/// MCP annotations then only raise: <c>destructiveHint: true</c> → at least high, <c>readOnlyHint: false</c> → at least
/// medium. <c>ToolRiskTests</c> holds the verb table's proof: over a hundred tool names of public MCP servers.
/// </summary>
public static class ToolRisk
{
    public const string Low = "low";
    public const string Medium = "medium";
    public const string High = "high";
    public const string Critical = "critical";

    public static IReadOnlyList<string> Levels => RiskLevels.All;

    // Verbs in their base form. Critical: destroys data or moves money; high: executes, creates, or reaches people and
    // systems outside (send, publish, deploy); medium: changes what exists; low: reads or computes.
    private static readonly (string Level, string[] Verbs)[] VerbTable =
    [
        (Critical, ["delete", "remove", "drop", "destroy", "kill", "truncate", "purge", "wipe", "erase", "terminate",
            "uninstall", "unlink", "rm", "rmdir", "transfer", "pay", "charge", "refund", "withdraw", "shred", "obliterate", "nuke"]),
        (High, ["write", "overwrite", "execute", "exec", "run", "shell", "eval", "evaluate", "create", "insert", "send", "post",
            "publish", "deploy", "push", "merge", "commit", "revoke", "grant", "invite", "upload", "install", "submit", "reply",
            "forward", "share", "tweet", "notify", "broadcast", "release", "approve", "reset", "restart",
            "reboot", "shutdown", "cancel", "finalize", "fork", "init", "initialize", "invoke", "trigger", "spawn", "launch",
            "import", "exfiltrate", "sudo", "impersonate", "migrate", "provision", "rollback", "revert"]),
        (Medium, ["update", "modify", "set", "put", "edit", "patch", "change", "add", "append", "rename", "move", "copy",
            "duplicate", "assign", "configure", "enable", "disable", "archive", "close", "start", "stop", "pause", "resume",
            "schedule", "label", "tag", "mark", "toggle", "save", "upsert", "apply", "sync", "scale", "replace", "checkout",
            "navigate", "click", "fill", "type", "press", "select", "hover", "drag", "resize", "generate",
            "store", "record", "subscribe", "unsubscribe", "react", "star", "pin", "unpin", "lock", "unlock", "attach",
            "detach", "link", "connect", "disconnect", "login", "logout", "follow", "unfollow", "upgrade", "downgrade"]),
        (Low, ["read", "get", "list", "search", "query", "fetch", "find", "lookup", "look", "describe", "show", "view",
            "browse", "count", "check", "inspect", "status", "info", "retrieve", "load", "print", "echo", "ping", "validate",
            "verify", "preview", "explain", "summarize", "analyze", "compare", "diff", "resolve", "screenshot", "snapshot",
            "monitor", "watch", "log", "stat", "head", "tail", "cat", "ls", "grep", "whoami", "version", "help", "download",
            "convert", "calculate", "compute", "estimate", "geocode", "translate", "open", "wait", "scan", "test", "lint",
            "parse", "render", "format", "detect", "identify", "extract", "measure", "sample", "think", "recall", "discover"]),
    ];

    // A verb's noun, where a name may use it instead (bulk_deletion, schedule_removal).
    private static readonly Dictionary<string, string> Nouns = new(StringComparer.Ordinal)
    {
        ["deletion"] = "delete",
        ["removal"] = "remove",
        ["destruction"] = "destroy",
        ["termination"] = "terminate",
        ["erasure"] = "erase",
        ["payment"] = "pay",
        ["execution"] = "execute",
        ["creation"] = "create",
        ["insertion"] = "insert",
        ["deployment"] = "deploy",
        ["publication"] = "publish",
        ["submission"] = "submit",
        ["modification"] = "modify",
        ["evaluation"] = "evaluate",
        ["invocation"] = "invoke",
    };

    private static readonly string[] Conjunctions = ["and", "or", "then", "plus"];

    private static readonly Dictionary<string, (string Level, string Verb)> NameVerbs = BuildNameVerbs();

    private static readonly Dictionary<string, (string Level, string Verb)> DescriptionVerbs = BuildDescriptionVerbs();

    public static int Rank(string level) => RiskLevels.Rank(level);

    public static bool IsValid(string? level) => RiskLevels.IsValid(level);

    public static (string Level, string Reason) Classify(string toolName, string? description, ToolAnnotations? annotations)
    {
        var (level, reason) = FromName(Words(toolName)) ?? FromDescription(description) ?? (annotations?.ReadOnlyHint == true
            ? (Low, "no verb in the name or the description's first word, and readOnlyHint true: low")
            : (Medium, "no verb in the name or the description's first word: medium by default"));

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

    private static (string Level, string Reason)? FromName(List<string> words)
    {
        (string Level, string Word)? decided = null;
        var first = true;
        for (var i = 0; i < words.Count; i++)
        {
            if (!NameVerbs.TryGetValue(words[i], out var verb)) continue;
            var isAction = first || (i > 0 && Conjunctions.Contains(words[i - 1]));
            if (!isAction) continue;
            first = false;
            if (decided is null || Rank(verb.Level) > Rank(decided.Value.Level)) decided = (verb.Level, words[i]);
        }
        return decided is { } d ? (d.Level, $"the name's verb '{d.Word}': {d.Level}") : null;
    }

    private static (string Level, string Reason)? FromDescription(string? description)
    {
        if (string.IsNullOrWhiteSpace(description)) return null;
        var firstWord = new string(description.TrimStart().TakeWhile(char.IsLetter).ToArray()).ToLowerInvariant();
        return DescriptionVerbs.TryGetValue(firstWord, out var verb)
            ? (verb.Level, $"the description begins with '{firstWord}': {verb.Level}")
            : null;
    }

    private static Dictionary<string, (string Level, string Verb)> BuildNameVerbs()
    {
        var verbs = new Dictionary<string, (string, string)>(StringComparer.Ordinal);
        foreach (var (level, list) in VerbTable)
        {
            foreach (var verb in list) verbs.TryAdd(verb, (level, verb));
        }
        foreach (var (noun, verb) in Nouns) verbs.TryAdd(noun, verbs[verb]);
        return verbs;
    }

    // A description says what the tool does in the third person ("Deletes ...") or the imperative ("Delete ...").
    private static Dictionary<string, (string Level, string Verb)> BuildDescriptionVerbs()
    {
        var verbs = new Dictionary<string, (string, string)>(StringComparer.Ordinal);
        foreach (var (level, list) in VerbTable)
        {
            foreach (var verb in list)
            {
                verbs.TryAdd(verb, (level, verb));
                verbs.TryAdd(verb + "s", (level, verb));
                verbs.TryAdd(verb + "es", (level, verb));
                if (verb.EndsWith('y') && verb.Length > 2 && !"aeiou".Contains(verb[^2])) verbs.TryAdd(verb[..^1] + "ies", (level, verb));
            }
        }
        return verbs;
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
