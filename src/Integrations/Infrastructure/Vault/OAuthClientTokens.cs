using System.Collections.Concurrent;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Integrations.Common;
using Integrations.Infrastructure.Network;

namespace Integrations.Infrastructure.Vault;

/// <summary>
/// Access tokens for the OAuth credential types: <c>oauth2_client_credentials</c> (RFC 6749 §4.4: the client
/// authenticates to its <c>token_url</c> with HTTP Basic, §2.3.1, and asks for <c>grant_type=client_credentials</c> with
/// the optional <c>scope</c> and <c>audience</c>) and <c>oauth2_refresh_token</c> (§6: <c>grant_type=refresh_token</c>,
/// the client authenticating with Basic when it has a secret, otherwise naming itself with <c>client_id</c>, §3.2.1).
/// A refresh token the server rotates (a new one in the answer) is used from then on and handed back to be sealed in
/// place. A token is kept per credential version until shortly before it expires (a fifth
/// of its lifetime, at most a minute, early) and fetched once for all concurrent callers; a failed exchange is not kept.
/// A token the destination refused is forgotten (<see cref="Forget"/>), so the next resolution exchanges again.
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
    public const string RefreshToken = "refresh_token";

    /// <summary>A token, and the refresh token that replaced the stored one when the server rotated it.</summary>
    public sealed record Exchanged(string AccessToken, string? RotatedRefreshToken);

    private static (string[] Required, string[] Optional) FieldsOf(string type) => type == CredentialTypes.OAuth2RefreshToken
        ? ([TokenUrl, ClientId, RefreshToken], [ClientSecret, Scope])
        : ([TokenUrl, ClientId, ClientSecret], [Scope, Audience]);

    private readonly HttpClient _http = new(guard.CreateHandler(TimeSpan.FromSeconds(5)), disposeHandler: true) { Timeout = TimeSpan.FromSeconds(10) };
    private readonly ConcurrentDictionary<(Guid, int), (string Token, DateTimeOffset RefreshAt)> _tokens = new();
    // The newest refresh token of a credential version, when the server rotated it (used even before it is sealed).
    private readonly ConcurrentDictionary<(Guid, int), string> _rotated = new();
    private readonly ConcurrentDictionary<(Guid, int), SemaphoreSlim> _exchanges = new();

    /// <summary>Shape of a stored credential's fields, without reaching anything: null when acceptable, else why not.</summary>
    public static string? FieldsRefusal(string type, IReadOnlyDictionary<string, string>? fields)
    {
        var (required, optional) = FieldsOf(type);
        if (fields is null) return $"An {type} credential needs 'fields' with {string.Join(", ", required)}.";
        if (required.FirstOrDefault(f => string.IsNullOrEmpty(fields.GetValueOrDefault(f))) is { } missing) return $"'fields' needs '{missing}'.";
        if (fields.Keys.FirstOrDefault(k => !required.Contains(k) && !optional.Contains(k)) is { } unknown)
        {
            return $"'fields' takes only {string.Join(", ", required.Concat(optional))}; not '{unknown}'.";
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

    public async Task<Result<Exchanged>> AccessTokenAsync(Guid credentialId, int version, string type, IReadOnlyDictionary<string, string> fields, CancellationToken ct)
    {
        var key = (credentialId, version);
        if (_tokens.TryGetValue(key, out var held) && held.RefreshAt > clock.GetUtcNow()) return new Exchanged(held.Token, null);
        var gate = _exchanges.GetOrAdd(key, _ => new SemaphoreSlim(1, 1));
        await gate.WaitAsync(ct);
        try
        {
            // Whoever waited behind the exchange takes its token.
            if (_tokens.TryGetValue(key, out held) && held.RefreshAt > clock.GetUtcNow()) return new Exchanged(held.Token, null);
            var refreshToken = type == CredentialTypes.OAuth2RefreshToken ? _rotated.GetValueOrDefault(key) ?? fields[RefreshToken] : null;
            var exchanged = await ExchangeAsync(fields, refreshToken, ct);
            if (!exchanged.IsSuccess) return exchanged.Error!;
            var (token, lifetime, issuedRefresh) = exchanged.Value;
            var early = TimeSpan.FromTicks(Math.Min(TimeSpan.FromMinutes(1).Ticks, lifetime.Ticks / 5));
            _tokens[key] = (token, clock.GetUtcNow() + lifetime - early);
            var rotated = refreshToken is not null && issuedRefresh is { Length: > 0 } && issuedRefresh != refreshToken ? issuedRefresh : null;
            if (rotated is not null) _rotated[key] = rotated;
            return new Exchanged(token, rotated);
        }
        finally
        {
            gate.Release();
        }
    }

    /// <summary>
    /// The destination refused <paramref name="token"/>: it is not handed out again. Only that token is dropped, so of
    /// several callers refused with it one exchange serves them all.
    /// </summary>
    public void Forget(Guid credentialId, int version, string token)
    {
        var key = (credentialId, version);
        if (_tokens.TryGetValue(key, out var held) && held.Token == token) _tokens.TryRemove(new(key, held));
    }

    /// <param name="refreshToken">For a refresh-token credential, the refresh token to use; null for client credentials.</param>
    private async Task<Result<(string Token, TimeSpan Lifetime, string? RefreshToken)>> ExchangeAsync(
        IReadOnlyDictionary<string, string> fields, string? refreshToken, CancellationToken ct)
    {
        var url = new Uri(fields[TokenUrl]);
        if (url.Scheme != "https" && !allowList.AllowsPlaintext(url.IdnHost))
        {
            return Error.SsrfBlocked($"The token URL must be https (http only for hosts on the egress allow-list), not {url.Scheme}://{url.Authority}.");
        }
        var form = new List<KeyValuePair<string, string>>();
        if (refreshToken is null) form.Add(new("grant_type", "client_credentials"));
        else form.AddRange([new("grant_type", "refresh_token"), new(RefreshToken, refreshToken)]);
        if (fields.GetValueOrDefault(Scope) is { Length: > 0 } scope) form.Add(new(Scope, scope));
        if (fields.GetValueOrDefault(Audience) is { Length: > 0 } audience) form.Add(new(Audience, audience));
        var secret = fields.GetValueOrDefault(ClientSecret);
        if (string.IsNullOrEmpty(secret)) form.Add(new(ClientId, fields[ClientId])); // a public client names itself (§3.2.1)
        using var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = new FormUrlEncodedContent(form) };
        if (!string.IsNullOrEmpty(secret))
        {
            var basic = Uri.EscapeDataString(fields[ClientId]) + ":" + Uri.EscapeDataString(secret);
            request.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(basic)));
        }
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
                return Error.UpstreamError($"The token endpoint {url.Authority} refused the {(refreshToken is null ? "client credentials" : "refresh token")} " +
                                           $"({(int)response.StatusCode}{(code is null ? "" : $", {Safe(code)}")}).");
            }
            if (root is not { ValueKind: JsonValueKind.Object } ok || !ok.TryGetProperty("access_token", out var token) || token.ValueKind != JsonValueKind.String
                || string.IsNullOrEmpty(token.GetString()))
            {
                return Error.UpstreamError($"The token endpoint {url.Authority} answered without an access_token.");
            }
            var lifetime = ok.TryGetProperty("expires_in", out var expires) && expires.TryGetInt64(out var seconds) && seconds > 0
                ? TimeSpan.FromSeconds(Math.Min(seconds, 86_400))
                : TimeSpan.FromMinutes(5); // no expires_in (it is optional): asked again after five minutes
            var issued = ok.TryGetProperty(RefreshToken, out var next) && next.ValueKind == JsonValueKind.String ? next.GetString() : null;
            return (token.GetString()!, lifetime, issued);
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
