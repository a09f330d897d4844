using System.Collections.Concurrent;
using NJsonSchema;
using NJsonSchema.Validation;

namespace Integrations.Pipeline.Governance;

/// <summary>
/// Validates tool arguments against the tool's pinned <c>inputSchema</c>. Parsed schemas are cached by
/// definition hash: a definition that changes gets a new hash, so a stale schema is never used.
/// </summary>
public sealed class ArgumentValidator
{
    private const int MaxCachedSchemas = 10_000;
    private readonly ConcurrentDictionary<string, Task<JsonSchema>> _schemas = new(StringComparer.Ordinal);

    /// <summary>The schema violations as field → messages; empty when the arguments are valid.</summary>
    public async Task<IReadOnlyDictionary<string, string[]>> ValidateAsync(string definitionHash, string inputSchemaJson, string argumentsJson)
    {
        if (_schemas.Count > MaxCachedSchemas) _schemas.Clear();
        JsonSchema schema;
        try
        {
            schema = await _schemas.GetOrAdd(definitionHash, _ => JsonSchema.FromJsonAsync(inputSchemaJson));
        }
        catch (Exception e) when (e is Newtonsoft.Json.JsonException or InvalidOperationException or NotSupportedException)
        {
            _schemas.TryRemove(definitionHash, out _);
            return new Dictionary<string, string[]> { ["arguments"] = ["The tool's input schema cannot be used to validate arguments."] };
        }

        var errors = schema.Validate(argumentsJson);
        return errors.Count == 0
            ? new Dictionary<string, string[]>()
            : Flatten(errors).GroupBy(e => e.Field).ToDictionary(g => g.Key, g => g.Select(e => e.Message).Distinct().ToArray());
    }

    private static IEnumerable<(string Field, string Message)> Flatten(IEnumerable<ValidationError> errors)
    {
        foreach (var error in errors)
        {
            if (error is ChildSchemaValidationError child)
            {
                foreach (var nested in Flatten(child.Errors.SelectMany(e => e.Value))) yield return nested;
                continue;
            }
            var path = error.Path is { Length: > 0 } p ? p.TrimStart('#', '/').Replace('/', '.') : string.Empty;
            var field = path.Length == 0 ? "arguments" : $"arguments.{path}";
            yield return (field, Describe(error));
        }
    }

    private static string Describe(ValidationError error) => error.Kind switch
    {
        ValidationErrorKind.PropertyRequired => $"'{error.Property}' is required.",
        ValidationErrorKind.NoAdditionalPropertiesAllowed => $"'{error.Property}' is not a parameter of this tool.",
        _ => $"{Humanize(error.Kind)}.",
    };

    private static string Humanize(ValidationErrorKind kind)
    {
        var words = string.Concat(kind.ToString().Select((c, i) => i > 0 && char.IsUpper(c) ? " " + char.ToLowerInvariant(c) : c.ToString()));
        return words;
    }
}
