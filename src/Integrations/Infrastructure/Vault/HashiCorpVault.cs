using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Integrations.Common;
using Microsoft.Extensions.Configuration;

namespace Integrations.Infrastructure.Vault;

/// <summary>
/// Where the deployment's HashiCorp Vault is, from <c>Integrations:Vault:HashiCorp</c>: <c>Address</c> (its base URL),
/// either <c>Token</c> or AppRole (<c>RoleId</c> and <c>SecretId</c>), an optional Enterprise <c>Namespace</c>, and
/// <c>CacheTtl</c> (default 30 s): how long a secret read is kept before it is read again.
/// </summary>
public sealed record HashiCorpVaultSettings(Uri? Address, string? Token, string? RoleId, string? SecretId, string? Namespace, TimeSpan CacheTtl)
{
    public const string Section = "Integrations:Vault:HashiCorp";

    public bool Configured => Address is not null;

    public static HashiCorpVaultSettings FromConfiguration(IConfiguration configuration)
    {
        var section = configuration.GetSection(Section);
        var address = section["Address"];
        Uri? uri = null;
        if (!string.IsNullOrWhiteSpace(address)
            && (!Uri.TryCreate(address, UriKind.Absolute, out uri) || uri.Scheme is not ("https" or "http")))
        {
            throw new InvalidOperationException($"{Section}:Address must be an http(s) URL, not '{address}'.");
        }
        var settings = new HashiCorpVaultSettings(uri, section["Token"], section["RoleId"], section["SecretId"], section["Namespace"],
            section.GetValue("CacheTtl", TimeSpan.FromSeconds(30)));
        if (settings.Configured && string.IsNullOrEmpty(settings.Token) && (string.IsNullOrEmpty(settings.RoleId) || string.IsNullOrEmpty(settings.SecretId)))
        {
            throw new InvalidOperationException($"{Section} needs Token, or RoleId and SecretId (AppRole).");
        }
        return settings;
    }
}

/// <summary>
/// Reads secrets from a HashiCorp Vault KV version 2 engine for <c>hcvault://</c> references, with the deployment's
/// token or an AppRole login (its token kept until shortly before its lease ends, and obtained again once when Vault
/// answers 403). A read is kept for <see cref="HashiCorpVaultSettings.CacheTtl"/>; nothing is leased, nothing is written.
/// Neither token nor secret is ever logged or put in an error.
/// </summary>
public sealed class HashiCorpVault(HashiCorpVaultSettings settings, TimeProvider clock) : IDisposable
{
    // The deployment's own Vault, named by the operator: not a tenant's destination, so not behind the egress guard.
    private readonly HttpClient _http = new(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(5), AllowAutoRedirect = false })
    {
        Timeout = TimeSpan.FromSeconds(10),
    };

    private readonly ConcurrentDictionary<string, (DateTimeOffset Until, IReadOnlyDictionary<string, string> Data)> _reads = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _login = new(1, 1);
    private (string Token, DateTimeOffset Until)? _appRoleToken;

    public bool Configured => settings.Configured;

    /// <summary>The value of <paramref name="field"/> in the secret at <paramref name="mount"/>/<paramref name="path"/>.</summary>
    public async Task<Result<string>> ReadFieldAsync(string mount, string path, string field, CancellationToken ct)
    {
        if (!settings.Configured)
        {
            return CredentialErrors.ForeignReference("hcvault:// references need the deployment's HashiCorp Vault (Integrations:Vault:HashiCorp:Address); none is configured.");
        }
        var key = $"{mount}/{path}";
        if (!_reads.TryGetValue(key, out var cached) || cached.Until <= clock.GetUtcNow())
        {
            var read = await ReadAsync(mount, path, ct);
            if (!read.IsSuccess) return read.Error!;
            cached = (clock.GetUtcNow() + settings.CacheTtl, read.Value);
            _reads[key] = cached;
        }
        return cached.Data.TryGetValue(field, out var value)
            ? value
            : CredentialErrors.NotFound($"The secret at {mount}/{path} in HashiCorp Vault has no field '{field}'.");
    }

    private async Task<Result<IReadOnlyDictionary<string, string>>> ReadAsync(string mount, string path, CancellationToken ct)
    {
        for (var attempt = 0; ; attempt++)
        {
            var token = await TokenAsync(ct);
            if (!token.IsSuccess) return token.Error!;
            using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(settings.Address!, $"v1/{mount}/data/{path}"));
            request.Headers.Add("X-Vault-Token", token.Value);
            if (!string.IsNullOrEmpty(settings.Namespace)) request.Headers.Add("X-Vault-Namespace", settings.Namespace);
            HttpResponseMessage response;
            try
            {
                response = await _http.SendAsync(request, ct);
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException && !ct.IsCancellationRequested)
            {
                return Error.UpstreamUnreachable($"HashiCorp Vault at {settings.Address!.Authority} did not answer ({e.GetType().Name}).");
            }
            using (response)
            {
                if (response.StatusCode == HttpStatusCode.Forbidden && attempt == 0 && settings.Token is null)
                {
                    _appRoleToken = null; // the AppRole token may have been revoked or expired early: log in once more
                    continue;
                }
                if (response.StatusCode == HttpStatusCode.NotFound)
                {
                    return CredentialErrors.NotFound($"HashiCorp Vault has no secret at {mount}/{path} (KV version 2).");
                }
                if (response.StatusCode == HttpStatusCode.Forbidden)
                {
                    return CredentialErrors.Denied($"HashiCorp Vault refused the service's token for {mount}/{path}: its policy must allow reading {mount}/data/{path}.");
                }
                if (!response.IsSuccessStatusCode)
                {
                    return Error.UpstreamError($"HashiCorp Vault answered {(int)response.StatusCode} for {mount}/{path}.");
                }
                try
                {
                    var body = await response.Content.ReadFromJsonAsync<JsonElement>(ct);
                    var data = body.GetProperty("data").GetProperty("data");
                    var fields = new Dictionary<string, string>(StringComparer.Ordinal);
                    foreach (var property in data.EnumerateObject())
                    {
                        fields[property.Name] = property.Value.ValueKind == JsonValueKind.String ? property.Value.GetString()! : property.Value.GetRawText();
                    }
                    return fields;
                }
                catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
                {
                    return Error.UpstreamError($"HashiCorp Vault's answer for {mount}/{path} is not a KV version 2 secret.");
                }
            }
        }
    }

    private async Task<Result<string>> TokenAsync(CancellationToken ct)
    {
        if (!string.IsNullOrEmpty(settings.Token)) return settings.Token;
        if (_appRoleToken is { } current && current.Until > clock.GetUtcNow()) return current.Token;
        await _login.WaitAsync(ct);
        try
        {
            // Another caller may have logged in while this one waited: one login per expiry.
            if (_appRoleToken is { } fresh && fresh.Until > clock.GetUtcNow()) return fresh.Token;
            using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(settings.Address!, "v1/auth/approle/login"))
            {
                Content = JsonContent.Create(new Dictionary<string, string> { ["role_id"] = settings.RoleId!, ["secret_id"] = settings.SecretId! }),
            };
            if (!string.IsNullOrEmpty(settings.Namespace)) request.Headers.Add("X-Vault-Namespace", settings.Namespace);
            try
            {
                using var response = await _http.SendAsync(request, ct);
                if (!response.IsSuccessStatusCode)
                {
                    return CredentialErrors.Denied($"HashiCorp Vault refused the AppRole login ({(int)response.StatusCode}): check RoleId and SecretId.");
                }
                var auth = (await response.Content.ReadFromJsonAsync<JsonElement>(ct)).GetProperty("auth");
                var token = auth.GetProperty("client_token").GetString()!;
                var lease = TimeSpan.FromSeconds(auth.TryGetProperty("lease_duration", out var seconds) ? seconds.GetInt64() : 0);
                // Renewed by logging in again at 80 % of the lease (a lease of 0 never expires).
                _appRoleToken = (token, lease > TimeSpan.Zero ? clock.GetUtcNow() + lease * 0.8 : DateTimeOffset.MaxValue);
                return token;
            }
            catch (Exception e) when (e is HttpRequestException or JsonException or KeyNotFoundException or InvalidOperationException
                                      || (e is TaskCanceledException && !ct.IsCancellationRequested))
            {
                return Error.UpstreamUnreachable($"The AppRole login at HashiCorp Vault ({settings.Address!.Authority}) failed ({e.GetType().Name}).");
            }
        }
        finally
        {
            _login.Release();
        }
    }

    public void Dispose()
    {
        _http.Dispose();
        _login.Dispose();
    }
}
