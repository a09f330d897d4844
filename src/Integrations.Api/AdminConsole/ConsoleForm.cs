using System.Globalization;
using System.Text.Json;
using Integrations.Common;

namespace Integrations.Api.AdminConsole;

/// <summary>
/// A posted form read into an operation's fields: blank means "not given" (null), and a value that cannot be the
/// field's type is a field error shown like the operation's own validation errors. The rules on the values are the
/// operation's; this only turns text into types.
/// </summary>
public sealed class ConsoleForm(IFormCollection form)
{
    private readonly Dictionary<string, string[]> _errors = new(StringComparer.Ordinal);

    public IFormCollection Values => form;

    /// <summary>The failure to show instead of sending the operation, when a field could not be read.</summary>
    public Error? Problem => _errors.Count == 0 ? null : Error.Validation(_errors, "Some fields could not be read; nothing was sent.");

    public string? Text(string name) => form[name].ToString().Trim() is { Length: > 0 } value ? value : null;

    /// <summary>A secret as typed (not trimmed: spaces may be part of it); null when blank. Pages never render it back.</summary>
    public string? Secret(string name) => form[name].ToString() is { Length: > 0 } value ? value : null;

    /// <summary><c>name=value</c> pairs, one a line (a credential's secret fields); null when none is given.</summary>
    public IReadOnlyDictionary<string, string>? Pairs(string name)
    {
        if (Secret(name) is not { } text) return null;
        var pairs = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var split = line.IndexOf('=', StringComparison.Ordinal);
            // The line may hold a secret: the error never repeats it.
            if (split < 1) return Refused<IReadOnlyDictionary<string, string>>(name, "Each line is name=value.");
            pairs[line[..split].Trim()] = line[(split + 1)..].Trim();
        }
        return pairs.Count == 0 ? null : pairs;
    }

    public Guid? Id(string name)
    {
        if (Text(name) is not { } text) return null;
        if (Guid.TryParse(text, out var id)) return id;
        _errors[name] = ["Must be an id (a UUID)."];
        return null;
    }

    /// <summary>Marks a field that could not be read into its type, with why.</summary>
    public void Refuse(string name, string message) => _errors[name] = [message];

    public bool Checked(string name) => form[name].ToString() is "true" or "on";

    public int? WholeNumber(string name) => Number(name, long.MinValue, long.MaxValue) is { } n && n is >= int.MinValue and <= int.MaxValue ? (int)n : NotInt(name);

    public long? LargeWholeNumber(string name) => Number(name, long.MinValue, long.MaxValue);

    /// <summary>An instant typed as ISO 8601 with its offset (e.g. <c>2027-01-31T00:00:00Z</c>).</summary>
    public DateTimeOffset? Instant(string name)
    {
        if (Text(name) is not { } text) return null;
        if (DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var at)) return at;
        _errors[name] = ["Must be a date and time, e.g. 2027-01-31T00:00:00Z."];
        return null;
    }

    /// <summary>Every value of a field given more than once (checkboxes).</summary>
    public IReadOnlyList<string> All(string name) => form[name].Where(v => !string.IsNullOrWhiteSpace(v)).Select(v => v!).ToList();

    /// <summary>Comma- or line-separated values, trimmed, blanks dropped; null when none is given.</summary>
    public IReadOnlyList<string>? List(string name) =>
        Text(name)?.Split([',', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) is { Length: > 0 } items ? items : null;

    /// <summary>A JSON object typed into a text area; blank is <paramref name="blank"/>.</summary>
    public JsonElement Json(string name, string blank = "{}")
    {
        try
        {
            return JsonDocument.Parse(Text(name) ?? blank).RootElement.Clone();
        }
        catch (JsonException e)
        {
            _errors[name] = [$"Not valid JSON: {e.Message}"];
            return default;
        }
    }

    private long? Number(string name, long min, long max)
    {
        if (Text(name) is not { } text) return null;
        if (long.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) && n >= min && n <= max) return n;
        _errors[name] = ["Must be a whole number."];
        return null;
    }

    private T? Refused<T>(string name, string message) where T : class
    {
        Refuse(name, message);
        return null;
    }

    private int? NotInt(string name)
    {
        if (Text(name) is not null && !_errors.ContainsKey(name)) _errors[name] = ["Must be a whole number."];
        return null;
    }
}
