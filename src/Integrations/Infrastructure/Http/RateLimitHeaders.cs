using System.Globalization;
using Integrations.Pipeline.Governance;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Infrastructure.Http;

/// <summary>
/// <c>RateLimit-Limit</c>, <c>RateLimit-Remaining</c> and <c>RateLimit-Reset</c> (seconds until the window ends), the
/// IETF draft's names (draft-ietf-httpapi-ratelimit-headers), on the answer of every governed call whose limits were
/// counted — allowed or refused with 429 beside <c>Retry-After</c> — from the <see cref="RateLimitStatus"/> its admission
/// left in the request's scope.
/// </summary>
public static class RateLimitHeaders
{
    public const string Limit = "RateLimit-Limit";
    public const string Remaining = "RateLimit-Remaining";
    public const string Reset = "RateLimit-Reset";

    public static Task Apply(HttpContext context, RequestDelegate next)
    {
        context.Response.OnStarting(() =>
        {
            if (context.RequestServices.GetService<RateLimitStatus>()?.Closest is { } closest)
            {
                var headers = context.Response.Headers;
                headers[Limit] = closest.Limit.ToString(CultureInfo.InvariantCulture);
                headers[Remaining] = closest.Remaining.ToString(CultureInfo.InvariantCulture);
                headers[Reset] = ((int)Math.Ceiling(closest.RetryAfter.TotalSeconds)).ToString(CultureInfo.InvariantCulture);
            }
            return Task.CompletedTask;
        });
        return next(context);
    }
}
