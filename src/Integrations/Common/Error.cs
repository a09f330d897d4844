namespace Integrations.Common;

/// <summary>An expected failure: a stable <see cref="Code"/>, the HTTP status it maps to, and what the caller can act on.</summary>
public sealed record Error(
    string Code,
    int Status,
    string Title,
    string? Detail = null,
    IReadOnlyDictionary<string, string[]>? FieldErrors = null,
    IReadOnlyDictionary<string, object?>? Extensions = null)
{
    /// <summary>The extension an upstream's refusal carries: the HTTP status it answered with.</summary>
    public const string UpstreamStatus = "upstream_status";

    /// <summary>
    /// The destination answered 401: it did not accept the credential sent (an OAuth access token may be renewed and the
    /// call tried once more, see <c>GovernedCall.WithRenewalAsync</c>).
    /// </summary>
    public bool RefusedCredential() => Extensions?.GetValueOrDefault(UpstreamStatus) is 401;

    public static Error Validation(IReadOnlyDictionary<string, string[]> fieldErrors, string? detail = null) =>
        new("validation_failed", 400, "The request is not valid.", detail ?? "See 'errors' for each field.", fieldErrors);

    public static Error Validation(string field, string message) =>
        Validation(new Dictionary<string, string[]> { [field] = [message] });

    public static Error Unauthenticated(string detail = "A valid API key is required.") =>
        new("unauthenticated", 401, "Authentication required.", detail);

    public static Error Forbidden(string detail) => new("forbidden", 403, "Forbidden.", detail);

    public static Error NotFound(string subject) =>
        new("not_found", 404, "Not found.", $"The {subject} does not exist.");

    public static Error Conflict(string detail) => new("conflict", 409, "Conflict.", detail);

    public static Error InvalidTransition(string subject, string from, string action) =>
        new("invalid_transition", 409, "Invalid state transition.", $"A {subject} in status '{from}' cannot be {action}.",
            Extensions: new Dictionary<string, object?> { ["current_status"] = from });

    public static Error PolicyDenied(string rule, string detail) =>
        new("policy_denied", 403, "Denied by policy.", detail, Extensions: new Dictionary<string, object?> { ["rule"] = rule });

    public static Error RateLimited(TimeSpan retryAfter, string detail) =>
        new("rate_limited", 429, "Rate limit exceeded.", detail,
            Extensions: new Dictionary<string, object?> { ["retry_after_seconds"] = (int)Math.Ceiling(retryAfter.TotalSeconds) });

    public static Error SsrfBlocked(string detail) => new("ssrf_blocked", 422, "Address not allowed.", detail);

    public static Error UpstreamTimeout(string detail) => new("upstream_timeout", 504, "Upstream timed out.", detail);

    public static Error UpstreamError(string detail) => new("upstream_error", 502, "Upstream error.", detail);

    /// <summary>No connection could be made (refused, reset before an answer, circuit open): the upstream never answered.</summary>
    public static Error UpstreamUnreachable(string detail) => new("upstream_unreachable", 502, "Upstream unreachable.", detail);

    /// <summary>The service cannot answer now (its database is unreachable); <paramref name="retryAfter"/> becomes <c>Retry-After</c>.</summary>
    public static Error Unavailable(string detail, TimeSpan? retryAfter = null) =>
        new("unavailable", 503, "Service unavailable.", detail, Extensions: retryAfter is { } after
            ? new Dictionary<string, object?> { ["retry_after_seconds"] = (int)Math.Ceiling(after.TotalSeconds) }
            : null);
}
