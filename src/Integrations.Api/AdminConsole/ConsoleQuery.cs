using System.Globalization;
using Integrations.Common;

namespace Integrations.Api.AdminConsole;

/// <summary>A list page's filters as its query string carries them (the pager repeats them on every page).</summary>
public static class ConsoleQuery
{
    /// <summary>The given fields as <c>a=1&amp;b=2</c>, blanks left out; null when all are blank.</summary>
    public static string? Of(params (string Name, string? Value)[] fields)
    {
        var parts = fields.Where(f => f.Value is not null).Select(f => f.Name + "=" + Uri.EscapeDataString(f.Value!)).ToList();
        return parts.Count == 0 ? null : string.Join("&", parts);
    }

    /// <summary>A filter field: blank is no filter.</summary>
    public static string? Blank(string? value) => string.IsNullOrWhiteSpace(value) ? null : value.Trim();
}

/// <summary>
/// The audit filters: event type (action), target (subject type and id), a UTC time range, and a governed call's run.
/// Times are typed as a browser's date-time field sends them (<c>2026-11-30T10:00</c>, read as UTC) or with an offset.
/// </summary>
public sealed record AuditFilter(string? Action, string? SubjectType, string? SubjectId, string? From, string? To, string? RunId)
{
    public static AuditFilter Read(string? action, string? subjectType, string? subjectId, string? from, string? to, string? runId) =>
        new(ConsoleQuery.Blank(action), ConsoleQuery.Blank(subjectType), ConsoleQuery.Blank(subjectId), ConsoleQuery.Blank(from),
            ConsoleQuery.Blank(to), ConsoleQuery.Blank(runId));

    public string? QueryString => ConsoleQuery.Of(("action", Action), ("subject_type", SubjectType), ("subject_id", SubjectId),
        ("from", From), ("to", To), ("run_id", RunId));

    public bool Any => QueryString is not null;

    /// <summary>The instants typed, or the field errors for those that are not one.</summary>
    public Result<(DateTimeOffset? From, DateTimeOffset? To)> Range()
    {
        var errors = new Dictionary<string, string[]>(StringComparer.Ordinal);
        var from = Instant("from", From, errors);
        var to = Instant("to", To, errors);
        return errors.Count == 0 ? (from, to) : Error.Validation(errors, "A time could not be read; nothing was searched.");
    }

    private static DateTimeOffset? Instant(string field, string? text, Dictionary<string, string[]> errors)
    {
        if (text is null) return null;
        if (DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var at)) return at;
        errors[field] = ["Must be a date and time, e.g. 2026-11-30T10:00 (UTC)."];
        return null;
    }
}
