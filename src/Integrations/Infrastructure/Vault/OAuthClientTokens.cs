using System.Collections.Concurrent;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Integrations.Common;
using Integrations.Infrastructure.Network;

namespace Integrations.Infrastructure.Vault;

/// <summary>
/// Access tokens for <c>oauth2_client_credentials</c> credentials (RFC 6749 §4.4): the client authenticates to its
/// <c>token_url</c> with HTTP Basic (§2.3.1) and asks for <c>grant_type=client_credentials</c> with the optional
/// <c>scope</c> and <c>audience</c>. A token is kept per credential version until shortly before it expires (a fifth
/// of its lifetime, at most a minute, early) and fetched once for all concurrent callers; a failed exchange is not kept.
/// The token endpoint is reached through the egress guard (https, or http to a host on the allow-list); neither the
/// client secret nor a token is ever logged or put in an error.
/// </summary>
public sealed class OAuthClientTokens(SsrfGuard guard, EgressAllowList allowList, TimeProvider clock) : IDisposable
{
    public const string TokenUrl = "token_url";
    public const string ClientId = "client_id";
    public const string ClientSecret = "client_secret";
    public const string Scope = "scope";
    public const string Audience = "audience";

    public static readonly string[] Required = [TokenUrl, ClientId, ClientSecret];
    public static readonly string[] Optional = [Scope, Audience];

    private readonly HttpClient _http = new(guard.CreateHandler(TimeSpan.FromSeconds(5)), disposeHandler: true) { Timeout = TimeSpan.FromSeconds(10) };
    private readonly ConcurrentDictionary<(Guid, int), (string Token, DateTimeOffset RefreshAt)> _tokens = new();
    private readonly ConcurrentDictionary<(Guid, int), SemaphoreSlim> _exchanges = new();

    /// <summary>Shape of a stored credential's fields, without reaching anything: null when acceptable, else why not.</summary>
    public static string? FieldsRefusal(IReadOnlyDictionary<string, string>? fields)
    {
        if (fields is null) return "An oauth2_client_credentials credential needs 'fields' with token_url, client_id and client_secret.";
        if (Required.FirstOrDefault(f => string.IsNullOrEmpty(fields.GetValueOrDefault(f))) is { } missing) return $"'fields' needs '{missing}'.";
        if (fields.Keys.FirstOrDefault(k => !Required.Contains(k) && !Optional.Contains(k)) is { } unknown)
        {
            return $"'fields' takes only {string.Join(", ", Required.Concat(Optional))}; not '{unknown}'.";
        }
        if (fields.Values.Any(v => v.Length > 4096)) return "Each field may be at most 4096 characters.";
        return Uri.TryCreate(fields[TokenUrl], UriKind.Absolute, out var url) && url.Scheme is "https" or "http"
               && string.IsNullOrEmpty(url.UserInfo) && string.IsNullOrEmpty(url.Fragment)
            ? null
            : "'token_url' must be an absolute http(s) URL without user info or fragment.";
    }

    /// <summary>The host the client secret is sent to.</summary>
    public static string? TokenHost(IReadOnlyDictionary<string, string> fields) =>
        Uri.TryCreate(fields.GetValueOrDefault(TokenUrl), UriKind.Absolute, out var url) ? url.IdnHost : null;

    public async Task<Result<string>> AccessTokenAsync(Guid credentialId, int version, IReadOnlyDictionary<string, string> fields, CancellationToken ct)
    {
        var key = (credentialId, version);
        if (_tokens.TryGetValue(key, out var held) && held.RefreshAt > clock.GetUtcNow()) return held.Token;
        var gate = _exchanges.GetOrAdd(key, _ => new SemaphoreSlim(1, 1));
        await gate.WaitAsync(ct);
        try
        {
            // Whoever waited behind the exchange takes its token.
            if (_tokens.TryGetValue(key, out held) && held.RefreshAt > clock.GetUtcNow()) return held.Token;
            var exchanged = await ExchangeAsync(fields, ct);
            if (!exchanged.IsSuccess) return exchanged.Error!;
            var (token, lifetime) = exchanged.Value;
            var early = TimeSpan.FromTicks(Math.Min(TimeSpan.FromMinutes(1).Ticks, lifetime.Ticks / 5));
            _tokens[key] = (token, clock.GetUtcNow() + lifetime - early);
            return token;
        }
        finally
        {
            gate.Release();
        }
    }

    private async Task<Result<(string Token, TimeSpan Lifetime)>> ExchangeAsync(IReadOnlyDictionary<string, string> fields, CancellationToken ct)
    {
        var url = new Uri(fields[TokenUrl]);
        if (url.Scheme != "https" && !allowList.AllowsPlaintext(url.IdnHost))
        {
            return Error.SsrfBlocked($"The token URL must be https (http only for hosts on the egress allow-list), not {url.Scheme}://{url.Authority}.");
        }
        var form = new List<KeyValuePair<string, string>> { new("grant_type", "client_credentials") };
        if (fields.GetValueOrDefault(Scope) is { Length: > 0 } scope) form.Add(new(Scope, scope));
        if (fields.GetValueOrDefault(Audience) is { Length: > 0 } audience) form.Add(new(Audience, audience));
        using var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = new FormUrlEncodedContent(form) };
        var basic = Uri.EscapeDataString(fields[ClientId]) + ":" + Uri.EscapeDataString(fields[ClientSecret]);
        request.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(basic)));
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json"));
        try
        {
            using var response = await _http.SendAsync(request, ct);
            var body = await response.Content.ReadAsStringAsync(ct);
            using var json = TryParse(body);
            var root = json?.RootElement;
            if (!response.IsSuccessStatusCode)
            {
                // RFC 6749 §5.2: "error" is a code from a fixed set, safe to repeat; the description is not repeated.
                var code = root is { ValueKind: JsonValueKind.Object } r && r.TryGetProperty("error", out var e) && e.ValueKind == JsonValueKind.String ? e.GetString() : null;
                return Error.UpstreamError($"The token endpoint {url.Authority} refused the client credentials ({(int)response.StatusCode}{(code is null ? "" : $", {Safe(code)}")}).");
            }
            if (root is not { ValueKind: JsonValueKind.Object } ok || !ok.TryGetProperty("access_token", out var token) || token.ValueKind != JsonValueKind.String
                || string.IsNullOrEmpty(token.GetString()))
            {
                return Error.UpstreamError($"The token endpoint {url.Authority} answered without an access_token.");
            }
            var lifetime = ok.TryGetProperty("expires_in", out var expires) && expires.TryGetInt64(out var seconds) && seconds > 0
                ? TimeSpan.FromSeconds(Math.Min(seconds, 86_400))
                : TimeSpan.FromMinutes(5); // no expires_in (it is optional): asked again after five minutes
            return (token.GetString()!, lifetime);
        }
        catch (HttpRequestException e) when (SsrfGuard.IsBlocked(e))
        {
            return Error.SsrfBlocked($"The token endpoint {url.Authority} is not a public address, nor one the egress allow-list opens.");
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException && !ct.IsCancellationRequested)
        {
            return Error.UpstreamUnreachable($"The token endpoint {url.Authority} did not answer ({e.GetType().Name}).");
        }
    }

    private static JsonDocument? TryParse(string body)
    {
        try
        {
            return JsonDocument.Parse(body);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static string Safe(string code) => code.Length <= 40 && code.All(c => char.IsAsciiLetterOrDigit(c) || c == '_') ? code : "(unreadable)";

    public void Dispose()
    {
        _http.Dispose();
        foreach (var gate in _exchanges.Values) gate.Dispose();
    }
}
