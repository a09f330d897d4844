using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Headers;
using Integrations.Features.Integrations;
using Integrations.Infrastructure.Network;
using Microsoft.Extensions.Configuration;
using Polly;
using Polly.CircuitBreaker;
using Polly.Retry;

namespace Integrations.Features.LlmGateway;

/// <summary>The gateway's timing and retry settings, from <c>Integrations:Llm</c>.</summary>
public sealed record LlmSettings(
    TimeSpan ConnectTimeout, TimeSpan ResponseTimeout, TimeSpan StreamIdleTimeout, int RetryAttempts, TimeSpan RetryDelay,
    TimeSpan MaxRetryAfter, long MaxResponseBytes, double BreakerFailureRatio = 0.5, int BreakerMinimumThroughput = 10,
    TimeSpan? BreakerSamplingDuration = null, TimeSpan? BreakerBreakDuration = null)
{
    public const string Section = "Integrations:Llm";

    public static LlmSettings FromConfiguration(IConfiguration configuration)
    {
        var section = configuration.GetSection(Section);
        return new LlmSettings(
            section.GetValue("ConnectTimeout", TimeSpan.FromSeconds(10)),
            section.GetValue("ResponseTimeout", TimeSpan.FromSeconds(120)),
            section.GetValue("StreamIdleTimeout", TimeSpan.FromSeconds(60)),
            Math.Clamp(section.GetValue("RetryAttempts", 2), 0, 5),
            section.GetValue("RetryDelay", TimeSpan.FromMilliseconds(500)),
            section.GetValue("MaxRetryAfter", TimeSpan.FromSeconds(10)),
            section.GetValue("MaxResponseBytes", 32L * 1024 * 1024),
            Math.Clamp(section.GetValue("BreakerFailureRatio", 0.5), 0.01, 1.0),
            Math.Max(2, section.GetValue("BreakerMinimumThroughput", 10)),
            section.GetValue("BreakerSamplingDuration", TimeSpan.FromSeconds(30)),
            section.GetValue("BreakerBreakDuration", TimeSpan.FromSeconds(30)));
    }
}

/// <summary>
/// Sends a request to an integration's provider: the provider's URL for the endpoint and the header that carries the
/// key, through the SSRF guard (each connection re-checked) and a Polly retry of what is safe to repeat because nothing
/// reached the caller yet — connection failures, 429 and 5xx answers, honouring <c>Retry-After</c> up to
/// <see cref="LlmSettings.MaxRetryAfter"/> (a longer wait is answered to the caller instead). Inside the retries, a
/// circuit breaker per integration (on this replica) counts each attempt: once most attempts of the sampling window
/// failed (connection failures, timeouts, 5xx), calls to that integration fail at once, without reaching the provider,
/// until the break is over and a trial call succeeds. Only response headers are awaited here; the caller reads the body
/// (a stream is forwarded as it arrives).
/// </summary>
public sealed class LlmUpstream : IDisposable
{
    public const string AzureApiVersion = ProviderHealthProbe.AzureApiVersion;

    private readonly HttpClient _client;
    private readonly LlmSettings _settings;
    private readonly ResiliencePipeline<HttpResponseMessage> _retries;
    private readonly ConcurrentDictionary<Guid, ResiliencePipeline<HttpResponseMessage>> _breakers = new();

    public LlmUpstream(SsrfGuard guard, LlmSettings settings)
    {
        _settings = settings;
        _client = new HttpClient(guard.CreateHandler(settings.ConnectTimeout), disposeHandler: true) { Timeout = Timeout.InfiniteTimeSpan };
        var builder = new ResiliencePipelineBuilder<HttpResponseMessage>();
        if (settings.RetryAttempts > 0)
        {
            builder.AddRetry(new RetryStrategyOptions<HttpResponseMessage>
            {
                MaxRetryAttempts = settings.RetryAttempts,
                Delay = settings.RetryDelay,
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                ShouldHandle = new PredicateBuilder<HttpResponseMessage>()
                    .Handle<HttpRequestException>(e => !SsrfGuard.IsBlocked(e) && e.HttpRequestError is HttpRequestError.ConnectionError or HttpRequestError.NameResolutionError)
                    .HandleResult(r => (int)r.StatusCode >= 500 || (r.StatusCode == HttpStatusCode.TooManyRequests && (RetryAfter(r) ?? TimeSpan.Zero) <= settings.MaxRetryAfter)),
                DelayGenerator = args => ValueTask.FromResult(args.Outcome.Result is { } r && RetryAfter(r) is { } after ? after : (TimeSpan?)null),
                OnRetry = args =>
                {
                    args.Outcome.Result?.Dispose();
                    return default;
                },
            });
        }
        _retries = builder.Build();
    }

    public LlmSettings Settings => _settings;

    /// <summary>A client's own <c>anthropic-version</c> and <c>anthropic-beta</c> (at <c>/v1/messages</c>), sent on in place of the gateway's.</summary>
    public sealed record AnthropicHeaders(string? Version, string? Beta);

    /// <summary>What the provider answered (headers read, body not yet) and how many attempts it took.</summary>
    public sealed record Answer(HttpResponseMessage Response, int Attempts);

    /// <summary>
    /// Sends <paramref name="body"/> to <paramref name="endpoint"/> of <paramref name="target"/>; throws what the last attempt
    /// threw (<see cref="HttpRequestException"/>, or <see cref="TimeoutException"/> when no headers came within
    /// <see cref="LlmSettings.ResponseTimeout"/>).
    /// </summary>
    public async Task<Answer> SendAsync(
        LlmCall.Target target, string? key, string endpoint, byte[] body, bool streaming, CancellationToken ct, AnthropicHeaders? anthropic = null)
    {
        var url = UrlOf(target, endpoint);
        var breaker = _breakers.GetOrAdd(target.Id, _ => Breaker());
        var attempts = 0;
        var response = await _retries.ExecuteAsync(token => breaker.ExecuteAsync(async inner =>
        {
            attempts++;
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(inner);
            timeout.CancelAfter(_settings.ResponseTimeout);
            using var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = new ByteArrayContent(body) };
            request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
            request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue(streaming ? "text/event-stream" : "application/json"));
            if (key is not null) Authenticate(target.Provider, request.Headers, key, anthropic);
            try
            {
                return await _client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token);
            }
            catch (OperationCanceledException) when (timeout.IsCancellationRequested && !inner.IsCancellationRequested)
            {
                throw new TimeoutException($"The provider sent no answer within {_settings.ResponseTimeout.TotalSeconds:0.###} s.");
            }
        }, token), ct);
        return new Answer(response, attempts);
    }

    private ResiliencePipeline<HttpResponseMessage> Breaker() => new ResiliencePipelineBuilder<HttpResponseMessage>()
        .AddCircuitBreaker(new CircuitBreakerStrategyOptions<HttpResponseMessage>
        {
            FailureRatio = _settings.BreakerFailureRatio,
            MinimumThroughput = _settings.BreakerMinimumThroughput,
            SamplingDuration = _settings.BreakerSamplingDuration ?? TimeSpan.FromSeconds(30),
            BreakDuration = _settings.BreakerBreakDuration ?? TimeSpan.FromSeconds(30),
            ShouldHandle = new PredicateBuilder<HttpResponseMessage>()
                .Handle<HttpRequestException>(e => !SsrfGuard.IsBlocked(e))
                .Handle<TimeoutException>()
                .HandleResult(r => (int)r.StatusCode >= 500),
        })
        .Build();

    /// <summary>The provider's URL for an OpenAI-style endpoint (<c>chat/completions</c>, <c>embeddings</c>).</summary>
    public static Uri UrlOf(LlmCall.Target target, string endpoint)
    {
        var path = endpoint == InvokeLlm.Embeddings ? "embeddings" : "chat/completions";
        string Base(string fallback) => (string.IsNullOrWhiteSpace(target.BaseUrl) ? fallback : target.BaseUrl).TrimEnd('/');
        return target.Provider switch
        {
            "anthropic" => new Uri(WithoutV1(Base("https://api.anthropic.com")) + "/v1/messages"),
            // Azure routes by deployment, named like the model; the body's model is ignored there.
            "azure_openai" => new Uri($"{Base("https://invalid.openai.azure.com")}/openai/deployments/{Uri.EscapeDataString(target.UpstreamModel)}/{path}?api-version={AzureApiVersion}"),
            "google" => new Uri($"{Base("https://generativelanguage.googleapis.com/v1beta")}/openai/{path}"),
            _ => new Uri($"{Base("https://api.openai.com/v1")}/{path}"),
        };
    }

    private static string WithoutV1(string url) => url.EndsWith("/v1", StringComparison.Ordinal) ? url[..^3] : url;

    private static void Authenticate(string provider, HttpRequestHeaders headers, string key, AnthropicHeaders? anthropic)
    {
        switch (provider)
        {
            case "azure_openai":
                headers.Add("api-key", key);
                break;
            case "anthropic":
                headers.Add("x-api-key", key);
                headers.TryAddWithoutValidation("anthropic-version", anthropic?.Version ?? ProviderHealthProbe.AnthropicVersion);
                if (anthropic?.Beta is { } beta) headers.TryAddWithoutValidation("anthropic-beta", beta);
                break;
            default:
                headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
                break;
        }
    }

    /// <summary>The wait a 429 or 503 asks for (<c>Retry-After</c> as seconds or a date), or null when it names none.</summary>
    public static TimeSpan? RetryAfter(HttpResponseMessage response)
    {
        if (response.Headers.RetryAfter is not { } header) return null;
        if (header.Delta is { } delta) return delta;
        return header.Date is { } date ? date - DateTimeOffset.UtcNow is var wait && wait > TimeSpan.Zero ? wait : TimeSpan.Zero : null;
    }

    public void Dispose() => _client.Dispose();
}
