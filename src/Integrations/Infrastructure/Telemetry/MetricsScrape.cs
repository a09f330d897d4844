using System.Security.Cryptography;
using System.Text;
using Integrations.Common;
using Integrations.Infrastructure.Http;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;

namespace Integrations.Infrastructure.Telemetry;

/// <summary>
/// The Prometheus scrape endpoint, <c>GET /metrics</c>. Its figures are the whole service's (every tenant's calls), so no
/// tenant's API key opens it: it is served only when <see cref="TokenSetting"/> is configured, to requests that carry that
/// token as <c>Authorization: Bearer</c>. It is a branch of the pipeline ahead of authentication (the token is never
/// looked up as an API key) and no endpoint, so it is not in the OpenAPI document.
/// </summary>
public static class MetricsScrape
{
    public const string Path = "/metrics";
    public const string TokenSetting = "Integrations:Metrics:ScrapeToken";

    /// <summary>Short tokens can be guessed; one of at least this many characters cannot.</summary>
    public const int MinimumTokenLength = 32;

    public static bool IsEnabled(IConfiguration configuration) => Token(configuration) is not null;

    /// <summary>The configured token; a token that is set but too short stops start-up rather than open the figures to guessing.</summary>
    public static byte[]? Token(IConfiguration configuration)
    {
        var token = configuration[TokenSetting];
        if (string.IsNullOrEmpty(token)) return null;
        if (token.Length < MinimumTokenLength || token.Any(char.IsWhiteSpace))
        {
            throw new InvalidOperationException(
                $"{TokenSetting} must be at least {MinimumTokenLength} characters without spaces (e.g. openssl rand -hex 32).");
        }
        return SHA256.HashData(Encoding.UTF8.GetBytes(token));
    }

    public static void UseIntegrationsMetrics(this IApplicationBuilder app, IConfiguration configuration)
    {
        if (Token(configuration) is not { } expected) return;
        app.UseOpenTelemetryPrometheusScrapingEndpoint(
            meterProvider: null,
            predicate: context => context.Request.Path == Path,
            path: null,
            configureBranchedPipeline: branch => branch.Use((context, next) => RequireToken(context, next, expected)),
            optionsName: null);
    }

    private static Task RequireToken(HttpContext context, RequestDelegate next, byte[] expected)
    {
        context.Items[RequestLog.RouteItem] = Path;
        var authorization = context.Request.Headers.Authorization.ToString();
        var given = authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? authorization["Bearer ".Length..].Trim() : "";
        // Hashes of equal length, compared in constant time: neither the token's length nor its prefix leaks through timing.
        if (given.Length > 0 && CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(given)), expected))
        {
            return next(context);
        }
        context.Response.Headers.WWWAuthenticate = given.Length > 0
            ? "Bearer realm=\"integrations-metrics\", error=\"invalid_token\""
            : "Bearer realm=\"integrations-metrics\"";
        return Problems.WriteAsync(context, Error.Unauthenticated($"Send the configured scrape token as 'Authorization: Bearer <token>' ({TokenSetting})."));
    }
}
