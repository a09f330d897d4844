using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Integrations.Pipeline.Governance;

/// <summary>
/// Takes out of an output what evidence must not keep, in place, counting what it replaced:
/// <list type="bullet">
/// <item>JSON paths: <c>$.a.b</c>, <c>$.a[*].b</c>, <c>$.a[0]</c>, <c>$['a b']</c>, <c>$.a.*</c> and <c>$..b</c> (any depth); the value there, whatever it is, becomes <c>"[redacted]"</c>.</item>
/// <item>Patterns in every string: <see cref="Email"/>, <see cref="Secret"/> (common key and token shapes, private keys, and
/// the value of any property named like a secret — password, token, api_key...), or <c>regex:&lt;.NET regular expression&gt;</c>.
/// A custom expression that runs past <see cref="RegexTimeout"/> on a string takes the whole string (fail closed).</item>
/// <item>Always: the call's own credential (key, token, password) wherever it appears.</item>
/// </list>
/// </summary>
public static class EvidenceRedactor
{
    public const string Email = "email";
    public const string Secret = "secret";
    public const string CustomPrefix = "regex:";
    public const string Redacted = "[redacted]";

    public static readonly TimeSpan RegexTimeout = TimeSpan.FromMilliseconds(100);

    private const int MaxCachedPatterns = 1000;

    private static readonly Regex EmailPattern = new(
        @"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}", RegexOptions.CultureInvariant, RegexTimeout);

    private static readonly Regex SecretPattern = new(string.Join('|',
            @"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
            @"\bsk-[A-Za-z0-9_-]{16,}",
            @"\bAKIA[0-9A-Z]{16}\b",
            @"\bgh[pousr]_[A-Za-z0-9]{20,}",
            @"\bxox[abposr]-[A-Za-z0-9-]{10,}",
            @"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
            @"(?i)\bbearer\s+[A-Za-z0-9._~+/-]{16,}=*"),
        RegexOptions.CultureInvariant, RegexTimeout);

    private static readonly Regex SecretName = new(
        @"^(?i)(password|passwd|pwd|secret|client_?secret|token|access_?token|refresh_?token|id_?token|api_?key|apikey|x-api-key|authorization|private_?key|credentials?)$",
        RegexOptions.CultureInvariant, RegexTimeout);

    private static readonly ConcurrentDictionary<string, Regex> Custom = new(StringComparer.Ordinal);

    /// <summary>Redacts <paramref name="output"/> in place; the number of values replaced.</summary>
    public static int Redact(JsonNode output, EvidencePolicy policy, IReadOnlyCollection<string> credentialValues)
    {
        var count = 0;
        foreach (var path in policy.Paths)
        {
            count += RedactPath(output, Parse(path));
        }
        var patterns = policy.Patterns;
        var byName = patterns.Contains(Secret);
        var regexes = patterns.Select(PatternOf).ToList();
        count += Walk(output, byName, regexes, credentialValues.Where(v => v.Length >= 6).ToList());
        return count;
    }

    public static string? PathProblem(string path) =>
        TryParse(path, out _, out var problem) ? null : problem;

    public static string? PatternProblem(string pattern)
    {
        if (pattern is Email or Secret) return null;
        if (!pattern.StartsWith(CustomPrefix, StringComparison.Ordinal) || pattern.Length == CustomPrefix.Length)
        {
            return $"A pattern is '{Email}', '{Secret}' or '{CustomPrefix}<regular expression>'.";
        }
        if (pattern.Length > 500) return "A regular expression is at most 500 characters.";
        try
        {
            _ = new Regex(pattern[CustomPrefix.Length..], RegexOptions.CultureInvariant, RegexTimeout);
            return null;
        }
        catch (ArgumentException e)
        {
            return $"Not a valid regular expression: {e.Message}";
        }
    }

    private static Regex PatternOf(string pattern) => pattern switch
    {
        Email => EmailPattern,
        Secret => SecretPattern,
        _ when Custom.TryGetValue(pattern, out var cached) => cached,
        _ => Cache(pattern, new Regex(pattern[CustomPrefix.Length..], RegexOptions.CultureInvariant, RegexTimeout)),
    };

    private static Regex Cache(string pattern, Regex regex)
    {
        if (Custom.Count < MaxCachedPatterns) Custom.TryAdd(pattern, regex);
        return regex;
    }

    private static int Walk(JsonNode node, bool byName, List<Regex> regexes, List<string> credentialValues)
    {
        var count = 0;
        switch (node)
        {
            case JsonObject obj:
                foreach (var name in obj.Select(p => p.Key).ToList())
                {
                    if (byName && obj[name] is not null && SecretName.IsMatch(name))
                    {
                        obj[name] = Redacted;
                        count++;
                    }
                    else if (obj[name] is { } child)
                    {
                        count += Visit(child, replacement => obj[name] = replacement, byName, regexes, credentialValues);
                    }
                }
                break;
            case JsonArray array:
                for (var i = 0; i < array.Count; i++)
                {
                    var index = i;
                    if (array[i] is { } child) count += Visit(child, replacement => array[index] = replacement, byName, regexes, credentialValues);
                }
                break;
        }
        return count;
    }

    private static int Visit(JsonNode child, Action<JsonNode> replace, bool byName, List<Regex> regexes, List<string> credentialValues)
    {
        if (child is JsonValue value && value.TryGetValue<string>(out var text))
        {
            var (redacted, count) = RedactText(text, regexes, credentialValues);
            if (count > 0) replace(JsonValue.Create(redacted));
            return count;
        }
        return Walk(child, byName, regexes, credentialValues);
    }

    private static (string Text, int Count) RedactText(string text, List<Regex> regexes, List<string> credentialValues)
    {
        var count = 0;
        foreach (var secret in credentialValues)
        {
            if (!text.Contains(secret, StringComparison.Ordinal)) continue;
            count++;
            text = text.Replace(secret, Redacted, StringComparison.Ordinal);
        }
        foreach (var regex in regexes)
        {
            try
            {
                var found = 0;
                text = regex.Replace(text, _ =>
                {
                    found++;
                    return Redacted;
                });
                count += found;
            }
            catch (RegexMatchTimeoutException)
            {
                return (Redacted, count + 1);
            }
        }
        return (text, count);
    }

    private abstract record Segment;

    private sealed record Child(string? Name, int? Index) : Segment;

    private sealed record AnyChild : Segment;

    private sealed record Descendant(string Name) : Segment;

    private static List<Segment> Parse(string path) =>
        TryParse(path, out var segments, out var problem) ? segments : throw new ArgumentException(problem, nameof(path));

    private static bool TryParse(string path, out List<Segment> segments, out string? problem)
    {
        segments = [];
        problem = null;
        if (path.Length is 0 or > 300 || path[0] != '$')
        {
            problem = "A path starts with '$' and is at most 300 characters, e.g. $.structuredContent.email or $..password.";
            return false;
        }
        var i = 1;
        while (i < path.Length)
        {
            if (path[i] == '.' && i + 1 < path.Length && path[i + 1] == '.')
            {
                var name = ReadName(path, ref i, 2);
                if (name is null) return Fail(out problem, i);
                segments.Add(new Descendant(name));
            }
            else if (path[i] == '.' && i + 1 < path.Length && path[i + 1] == '*')
            {
                segments.Add(new AnyChild());
                i += 2;
            }
            else if (path[i] == '.')
            {
                var name = ReadName(path, ref i, 1);
                if (name is null) return Fail(out problem, i);
                segments.Add(new Child(name, null));
            }
            else if (path[i] == '[')
            {
                var end = path.IndexOf(']', i);
                if (end < 0) return Fail(out problem, i);
                var inside = path[(i + 1)..end];
                if (inside == "*") segments.Add(new AnyChild());
                else if (int.TryParse(inside, out var index) && index >= 0) segments.Add(new Child(null, index));
                else if (inside.Length >= 2 && inside[0] is '\'' or '"' && inside[^1] == inside[0]) segments.Add(new Child(inside[1..^1], null));
                else return Fail(out problem, i);
                i = end + 1;
            }
            else
            {
                return Fail(out problem, i);
            }
        }
        if (segments.Count == 0) problem = "The path must name something below '$'.";
        return problem is null;
    }

    private static bool Fail(out string? problem, int at)
    {
        problem = $"Not a supported JSON path at character {at + 1}: use .name, ['name'], [n], [*], .* or ..name after '$'.";
        return false;
    }

    private static string? ReadName(string path, ref int i, int skip)
    {
        var start = i + skip;
        var end = start;
        while (end < path.Length && (char.IsLetterOrDigit(path[end]) || path[end] is '_' or '-' or '$')) end++;
        if (end == start) return null;
        i = end;
        return path[start..end];
    }

    private static int RedactPath(JsonNode node, List<Segment> segments, int at = 0)
    {
        var last = at == segments.Count - 1;
        var count = 0;
        foreach (var (child, replace) in Matches(node, segments[at]))
        {
            if (last)
            {
                replace(JsonValue.Create(Redacted));
                count++;
            }
            else if (child is not null)
            {
                count += RedactPath(child, segments, at + 1);
            }
        }
        return count;
    }

    /// <summary>The children <paramref name="segment"/> selects under <paramref name="node"/>, each with how to replace it; listed before any is replaced.</summary>
    private static List<(JsonNode? Child, Action<JsonNode> Replace)> Matches(JsonNode node, Segment segment)
    {
        var found = new List<(JsonNode?, Action<JsonNode>)>();
        switch (segment, node)
        {
            case (Child { Name: { } name }, JsonObject obj) when obj.ContainsKey(name):
                found.Add((obj[name], v => obj[name] = v));
                break;
            case (Child { Index: { } index }, JsonArray array) when index < array.Count:
                found.Add((array[index], v => array[index] = v));
                break;
            case (AnyChild, JsonObject obj):
                foreach (var name in obj.Select(p => p.Key).ToList()) found.Add((obj[name], v => obj[name] = v));
                break;
            case (AnyChild, JsonArray array):
                for (var i = 0; i < array.Count; i++)
                {
                    var index = i;
                    found.Add((array[index], v => array[index] = v));
                }
                break;
            case (Descendant descendant, _):
                CollectDescendants(node, descendant.Name, found);
                break;
        }
        return found;
    }

    private static void CollectDescendants(JsonNode node, string name, List<(JsonNode?, Action<JsonNode>)> found)
    {
        if (node is JsonObject obj)
        {
            foreach (var key in obj.Select(p => p.Key).ToList())
            {
                if (key == name) found.Add((obj[key], v => obj[key] = v));
                else if (obj[key] is { } child) CollectDescendants(child, name, found);
            }
        }
        else if (node is JsonArray array)
        {
            foreach (var child in array)
            {
                if (child is not null) CollectDescendants(child, name, found);
            }
        }
    }
}
