using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using Integrations.Common;
using Integrations.Infrastructure.Network;
using Microsoft.Extensions.Configuration;
using Polly;
using Polly.Retry;
using Polly.Timeout;

namespace Integrations.Features.Integrations;

/// <summary>Probe timing and the background sweep, from <c>Integrations:Health</c>.</summary>
public sealed record HealthCheckSettings(TimeSpan ProbeTimeout, int ProbeRetries, TimeSpan RetryDelay, TimeSpan SweepInterval, int FailuresBeforeError = 3)
{
    public const string Section = "Integrations:Health";

    public static HealthCheckSettings FromConfiguration(IConfiguration configuration)
    {
        var section = configuration.GetSection(Section);
        return new HealthCheckSettings(
            section.GetValue("ProbeTimeout", TimeSpan.FromSeconds(10)),
            Math.Clamp(section.GetValue("ProbeRetries", 2), 0, 5),
            section.GetValue("RetryDelay", TimeSpan.FromMilliseconds(500)),
            section.GetValue("SweepInterval", TimeSpan.FromMinutes(15)),
            Math.Max(0, section.GetValue("FailuresBeforeError", 3)));
    }
}

/// <summary>
/// Asks an LLM provider whether a key works, with the cheapest authenticated call each offers (list models), through
/// the SSRF guard (checked before any connection, and again at connect) and a Polly pipeline: a per-attempt timeout,
/// retries of connection failures, attempt timeouts and 5xx for these idempotent GETs, and an overall timeout.
/// Only the provider's auth header carries the key; the answer is judged by its status alone (a body may echo a key).
/// </summary>
public sealed class ProviderHealthProbe : IDisposable
{
    public const string AnthropicVersion = "2023-06-01";
    public const string AzureApiVersion = "2024-10-21";

    public sealed record Outcome(string Health, string Message, int? UpstreamStatus, long DurationMs);

    private readonly SsrfGuard _guard;
    private readonly HealthCheckSettings _settings;
    private readonly HttpClient _client;
    private readonly ResiliencePipeline<HttpResponseMessage> _pipeline;

    public ProviderHealthProbe(SsrfGuard guard, HealthCheckSettings settings)
    {
        _guard = guard;
        _settings = settings;
        _client = new HttpClient(guard.CreateHandler(settings.ProbeTimeout), disposeHandler: true) { Timeout = Timeout.InfiniteTimeSpan };
        var builder = new ResiliencePipelineBuilder<HttpResponseMessage>()
            .AddTimeout(Overall(settings));
        if (settings.ProbeRetries > 0)
        {
            builder.AddRetry(new RetryStrategyOptions<HttpResponseMessage>
            {
                MaxRetryAttempts = settings.ProbeRetries,
                Delay = settings.RetryDelay,
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                ShouldHandle = new PredicateBuilder<HttpResponseMessage>()
                    .Handle<HttpRequestException>(e => !SsrfGuard.IsBlocked(e))
                    .Handle<TimeoutRejectedException>()
                    .HandleResult(r => (int)r.StatusCode >= 500),
                OnRetry = args =>
                {
                    args.Outcome.Result?.Dispose();
                    return default;
                },
            });
        }
        _pipeline = builder.AddTimeout(settings.ProbeTimeout).Build();
    }

    private static TimeSpan Overall(HealthCheckSettings s) =>
        s.ProbeTimeout * (s.ProbeRetries + 1) + s.RetryDelay * Math.Pow(2, s.ProbeRetries + 1) + TimeSpan.FromSeconds(1);

    /// <summary>The probe's request for a provider: its URL and the header that carries the key.</summary>
    public static (Uri Url, Action<HttpRequestHeaders, string> Authenticate) Target(string provider, string? baseUrl)
    {
        string Base(string fallback) => (string.IsNullOrWhiteSpace(baseUrl) ? fallback : baseUrl).TrimEnd('/');
        return provider switch
        {
            "anthropic" => (new Uri(WithoutTrailingV1(Base("https://api.anthropic.com")) + "/v1/models"), (h, key) =>
            {
                h.Add("x-api-key", key);
                h.Add("anthropic-version", AnthropicVersion);
            }
            ),
            "azure_openai" => (new Uri(Base("https://invalid.openai.azure.com") + $"/openai/models?api-version={AzureApiVersion}"), (h, key) => h.Add("api-key", key)),
            "google" => (new Uri(Base("https://generativelanguage.googleapis.com/v1beta") + "/models"), (h, key) => h.Add("x-goog-api-key", key)),
            _ => (new Uri(Base("https://api.openai.com/v1") + "/models"), (h, key) => h.Authorization = new AuthenticationHeaderValue("Bearer", key)),
        };

        static string WithoutTrailingV1(string url) => url.EndsWith("/v1", StringComparison.Ordinal) ? url[..^3] : url;
    }

    /// <summary>The health the provider's answer means; <c>ssrf_blocked</c> when the URL may not be connected to at all.</summary>
    public async Task<Result<Outcome>> ProbeAsync(string provider, string? baseUrl, string key, CancellationToken ct)
    {
        var (url, authenticate) = Target(provider, baseUrl);
        var allowed = await _guard.CheckAsync(url, ct);
        if (!allowed.IsSuccess) return allowed.Error!;

        var started = Stopwatch.GetTimestamp();
        long Elapsed() => (long)Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        try
        {
            using var response = await _pipeline.ExecuteAsync(async token =>
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, url);
                authenticate(request.Headers, key);
                request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json"));
                return await _client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, token);
            }, ct);
            var status = (int)response.StatusCode;
            return new Outcome(Classify(response.StatusCode), Describe(response.StatusCode), status, Elapsed());
        }
        catch (TimeoutRejectedException)
        {
            return new Outcome("failing", $"The provider did not answer within {_settings.ProbeTimeout.TotalSeconds:0.###} s (after {_settings.ProbeRetries + 1} attempt(s)).", null, Elapsed());
        }
        catch (HttpRequestException e) when (SsrfGuard.IsBlocked(e))
        {
            return Error.SsrfBlocked($"The provider host '{url.Host}' resolved to an address that is not allowed.");
        }
        catch (HttpRequestException e)
        {
            return new Outcome("failing", $"Could not reach the provider at {url.Host}: {Reason(e.HttpRequestError)}.", null, Elapsed());
        }
    }

    private static string Classify(HttpStatusCode status) => (int)status switch
    {
        >= 200 and < 300 => "healthy",
        401 or 403 => "failing",
        429 or >= 500 => "degraded",
        _ => "failing",
    };

    private static string Describe(HttpStatusCode status) => (int)status switch
    {
        >= 200 and < 300 => $"The provider accepted the credential (HTTP {(int)status}).",
        401 or 403 => $"The provider rejected the credential (HTTP {(int)status}): rotate the key or attach another credential.",
        429 => "The provider is rate limiting this key (HTTP 429).",
        >= 500 => $"The provider answered with a server error (HTTP {(int)status}).",
        _ => $"The provider answered HTTP {(int)status} to the models endpoint: check the base URL.",
    };

    private static string Reason(HttpRequestError error) => error switch
    {
        HttpRequestError.NameResolutionError => "the host name does not resolve",
        HttpRequestError.ConnectionError => "the connection was refused or dropped",
        HttpRequestError.SecureConnectionError => "the TLS handshake failed",
        HttpRequestError.InvalidResponse or HttpRequestError.ResponseEnded => "the answer was not valid HTTP",
        _ => "the request failed",
    };

    public void Dispose() => _client.Dispose();
}
