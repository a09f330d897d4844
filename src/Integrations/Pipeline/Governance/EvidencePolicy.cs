using System.Text.Json;
using System.Text.Json.Serialization;

namespace Integrations.Pipeline.Governance;

/// <summary>
/// Whether, and how, the output of a governed call is kept as evidence: set per MCP server or datasource (a tool may turn
/// its server's on or off), off unless set. What is kept is redacted first (<see cref="EvidenceRedactor"/>: the JSON paths
/// in <see cref="RedactPaths"/>, the patterns in <see cref="RedactPatterns"/>, and always the call's own credential), then
/// cut at <see cref="MaxBytes"/>; it is dropped <see cref="RetentionDays"/> after the call.
/// </summary>
public sealed record EvidencePolicy(
    bool Enabled,
    IReadOnlyList<string>? RedactPaths = null,
    IReadOnlyList<string>? RedactPatterns = null,
    int MaxBytes = EvidencePolicy.DefaultMaxBytes,
    int RetentionDays = EvidencePolicy.DefaultRetentionDays)
{
    public const int DefaultMaxBytes = 64 * 1024;
    public const int MaxMaxBytes = 1024 * 1024;
    public const int DefaultRetentionDays = 30;
    public const int MaxRetentionDays = 3650;
    public const int MaxRules = 50;

    /// <summary>The patterns applied when a policy names none: e-mail addresses and secrets are never kept by default.</summary>
    public static readonly IReadOnlyList<string> DefaultPatterns = [EvidenceRedactor.Email, EvidenceRedactor.Secret];

    /// <summary>A tool's own choice: follow its server's policy, or turn it on or off for this tool alone.</summary>
    public static readonly string[] ToolChoices = ["inherit", "on", "off"];

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    [JsonIgnore]
    public IReadOnlyList<string> Paths => RedactPaths ?? [];

    [JsonIgnore]
    public IReadOnlyList<string> Patterns => RedactPatterns ?? DefaultPatterns;

    /// <summary>This policy with its defaults written out, as it is stored and shown.</summary>
    public EvidencePolicy Normalize() => this with { RedactPaths = Paths, RedactPatterns = Patterns };

    public string ToJson() => JsonSerializer.Serialize(Normalize(), Json);

    /// <summary>The policy stored as <paramref name="json"/> (a column), or null when none is.</summary>
    public static EvidencePolicy? FromJson(string? json) =>
        json is { Length: > 0 } ? JsonSerializer.Deserialize<EvidencePolicy>(json, Json) : null;

    /// <summary>
    /// What applies to a call: the target's policy, unless the tool turned it <c>off</c>; a tool turned <c>on</c> under a
    /// server without a policy keeps its output with the defaults. Null when nothing is kept.
    /// </summary>
    public static EvidencePolicy? Effective(string? targetPolicyJson, string? toolChoice = null)
    {
        if (toolChoice == "off") return null;
        var policy = FromJson(targetPolicyJson);
        if (toolChoice == "on") return (policy ?? new EvidencePolicy(true)) with { Enabled = true };
        return policy is { Enabled: true } ? policy : null;
    }

    /// <summary>What is wrong with the policy, by field; empty when it can be stored.</summary>
    public IReadOnlyDictionary<string, string[]> Problems()
    {
        var problems = new Dictionary<string, string[]>();
        if (MaxBytes is < 1 or > MaxMaxBytes) problems["max_bytes"] = [$"Between 1 and {MaxMaxBytes} bytes."];
        if (RetentionDays is < 1 or > MaxRetentionDays) problems["retention_days"] = [$"Between 1 and {MaxRetentionDays} days."];
        if (Paths.Count > MaxRules) problems["redact_paths"] = [$"At most {MaxRules} paths."];
        if (Patterns.Count > MaxRules) problems["redact_patterns"] = [$"At most {MaxRules} patterns."];
        for (var i = 0; i < Paths.Count && i < MaxRules; i++)
        {
            if (EvidenceRedactor.PathProblem(Paths[i]) is { } problem) problems[$"redact_paths[{i}]"] = [problem];
        }
        for (var i = 0; i < Patterns.Count && i < MaxRules; i++)
        {
            if (EvidenceRedactor.PatternProblem(Patterns[i]) is { } problem) problems[$"redact_patterns[{i}]"] = [problem];
        }
        return problems;
    }
}
