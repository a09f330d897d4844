namespace Integrations.Infrastructure.Network;

/// <summary>
/// The one shape rule for every outbound URL (MCP servers, integrations' base URLs, connectors): absolute, no user
/// info (credentials travel only as vault references) and no fragment (never sent, so only ever a sign of confusion
/// or smuggling). Validators answer it as a field error; the <see cref="SsrfGuard"/> refuses whatever slipped past
/// as <c>ssrf_blocked</c>, and is the one judge of schemes and addresses.
/// </summary>
public static class EgressUrl
{
    public const int MaxLength = 2048;


    /// <summary>Why the URL is refused, or null when its shape is fine (whether it may be reached is the guard's call).</summary>
    public static string? Problem(string? url)
    {
        if (string.IsNullOrEmpty(url)) return "The URL is empty.";
        if (url.Length > MaxLength) return $"The URL is longer than {MaxLength} characters.";
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri)) return "The URL is not absolute.";
        return Problem(uri);
    }

    public static string? Problem(Uri uri)
    {
        if (!uri.IsAbsoluteUri) return "The URL is not absolute.";
        if (!string.IsNullOrEmpty(uri.UserInfo) || AuthorityHasAt(uri))
        {
            return "The URL carries user info; credentials travel only as vault references.";
        }
        if (!string.IsNullOrEmpty(uri.Fragment) || uri.OriginalString.Contains('#', StringComparison.Ordinal)) return "The URL carries a fragment.";
        return null;
    }

    // "https://@host/" has an empty UserInfo but still an '@' before the host.
    private static bool AuthorityHasAt(Uri uri)
    {
        var s = uri.OriginalString;
        var start = s.IndexOf("//", StringComparison.Ordinal);
        if (start < 0) return false;
        var end = s.IndexOfAny(['/', '?', '#'], start + 2);
        var authority = end < 0 ? s[(start + 2)..] : s[(start + 2)..end];
        return authority.Contains('@', StringComparison.Ordinal);
    }
}
