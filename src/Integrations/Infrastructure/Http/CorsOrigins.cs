using Microsoft.Extensions.Configuration;

namespace Integrations.Infrastructure.Http;

/// <summary>
/// Browsers may call the API from the origins listed under <c>Integrations:Http:CorsOrigins:0..n</c> (exact
/// <c>scheme://host[:port]</c>, no wildcard: a key sent by a page is a secret); with none listed (the default) no
/// cross-origin answer carries CORS headers, so browsers refuse them.
/// </summary>
public static class CorsOrigins
{
    public const string Section = "Integrations:Http:CorsOrigins";

    /// <summary>Headers a browser script may read from an answer.</summary>
    public static readonly string[] ExposedHeaders = ["X-Request-Id", "Retry-After", "Idempotent-Replayed", "Location", "WWW-Authenticate",
        RateLimitHeaders.Limit, RateLimitHeaders.Remaining, RateLimitHeaders.Reset];

    public static string[] FromConfiguration(IConfiguration configuration)
    {
        var origins = configuration.GetSection(Section).Get<string[]>() ?? [];
        foreach (var origin in origins)
        {
            if (!Uri.TryCreate(origin, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https")
                || uri.PathAndQuery != "/" || origin.EndsWith('/') || !string.IsNullOrEmpty(uri.UserInfo))
            {
                throw new InvalidOperationException(
                    $"{Section} entry '{origin}' is not an origin: write it as scheme://host[:port], e.g. https://console.example.com (no path, no wildcard).");
            }
        }
        return origins;
    }
}
