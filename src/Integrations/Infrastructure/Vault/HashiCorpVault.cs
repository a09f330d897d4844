using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Integrations.Common;
using Integrations.Infrastructure.Network;
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

    public const string AddressField = "address";
    public const string NamespaceField = "namespace";
    public const string TokenField = "token";
    public const string RoleIdField = "role_id";
    public const string SecretIdField = "secret_id";
    public const string CaCertificateField = "ca_certificate";

    private static readonly string[] Fields = [AddressField, NamespaceField, TokenField, RoleIdField, SecretIdField, CaCertificateField];

    /// <summary>The roots a tenant's Vault's TLS certificate must chain to (its <c>ca_certificate</c>); null: the system's roots.</summary>
    public X509Certificate2Collection? TrustedRoots { get; init; }

    /// <summary>
    /// A tenant's Vault connection from the <c>fields</c> of a <c>hashicorp_vault</c> credential: <c>address</c> (http(s)
    /// URL), <c>token</c> or <c>role_id</c> + <c>secret_id</c> (AppRole), optional <c>namespace</c> and <c>ca_certificate</c>
    /// (PEM). The refusal says what is wrong, never a value.
    /// </summary>
    public static Result<HashiCorpVaultSettings> FromFields(IReadOnlyDictionary<string, string>? fields, TimeSpan cacheTtl)
    {
        static Error Refuse(string detail) => Error.Validation("fields", detail);
        if (fields is null) return Refuse($"A hashicorp_vault credential needs 'fields': '{AddressField}', and '{TokenField}' or '{RoleIdField}' and '{SecretIdField}'.");
        var extra = fields.Keys.Except(Fields).ToList();
        if (extra.Count > 0) return Refuse($"A hashicorp_vault credential takes only '{string.Join("', '", Fields)}', not '{string.Join("', '", extra)}'.");
        if (!Uri.TryCreate(fields.GetValueOrDefault(AddressField), UriKind.Absolute, out var address) || address.Scheme is not ("https" or "http")
            || !string.IsNullOrEmpty(address.Query) || !string.IsNullOrEmpty(address.Fragment) || !string.IsNullOrEmpty(address.UserInfo))
        {
            return Refuse($"'{AddressField}' must be the Vault's http(s) base URL (e.g. https://vault.example.com:8200), without query or credentials.");
        }
        var token = fields.GetValueOrDefault(TokenField);
        var roleId = fields.GetValueOrDefault(RoleIdField);
        var secretId = fields.GetValueOrDefault(SecretIdField);
        if (string.IsNullOrEmpty(token) == (string.IsNullOrEmpty(roleId) && string.IsNullOrEmpty(secretId)) || (string.IsNullOrEmpty(token) && (string.IsNullOrEmpty(roleId) || string.IsNullOrEmpty(secretId))))
        {
            return Refuse($"A hashicorp_vault credential authenticates with '{TokenField}', or with AppRole '{RoleIdField}' and '{SecretIdField}': one of the two, not both.");
        }
        X509Certificate2Collection? roots = null;
        if (fields.TryGetValue(CaCertificateField, out var caPem) && (roots = ClientCertificate.TrustedRootsFrom(caPem)) is null)
        {
            return Refuse($"'{CaCertificateField}' is not a PEM certificate (-----BEGIN CERTIFICATE-----).");
        }
        return new HashiCorpVaultSettings(address, string.IsNullOrEmpty(token) ? null : token, roleId, secretId, fields.GetValueOrDefault(NamespaceField), cacheTtl)
        {
            TrustedRoots = roots,
        };
    }

    public override string ToString() => $"HashiCorpVaultSettings({Address}, {(Token is null ? "AppRole" : "token")}, secrets redacted)";

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
/// Reads secrets from a HashiCorp Vault KV version 2 engine for <c>hcvault://</c> references: the deployment's Vault, or
/// a tenant's (<see cref="TenantVaults"/>), with its token or an AppRole login (its token kept until shortly before its
/// lease ends, and obtained again once when Vault answers 403). A read is kept for <see cref="HashiCorpVaultSettings.CacheTtl"/>;
/// nothing is leased, nothing is written. Neither token nor secret is ever logged or put in an error.
/// </summary>
public sealed class HashiCorpVault : IDisposable
{
    private readonly HashiCorpVaultSettings _settings;
    private readonly TimeProvider _clock;
    private readonly HttpClient _http;
    private readonly SsrfGuard? _guard;
    private readonly string _name;

    /// <summary>The deployment's own Vault, named by the operator: not a tenant's destination, so not behind the egress guard.</summary>
    public HashiCorpVault(HashiCorpVaultSettings settings, TimeProvider clock)
        : this(settings, clock, new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(5), AllowAutoRedirect = false }, null, "the deployment's HashiCorp Vault")
    {
    }

    /// <param name="guard">For a tenant's Vault: its address is checked before each read (the handler checks every connection too).</param>
    /// <param name="name">How errors name this Vault.</param>
    internal HashiCorpVault(HashiCorpVaultSettings settings, TimeProvider clock, HttpMessageHandler handler, SsrfGuard? guard, string name)
    {
        _settings = settings;
        _clock = clock;
        _guard = guard;
        _name = name;
        _http = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(10) };
    }

    private readonly ConcurrentDictionary<string, (DateTimeOffset Until, IReadOnlyDictionary<string, string> Data)> _reads = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _login = new(1, 1);
    private (string Token, DateTimeOffset Until)? _appRoleToken;

    public bool Configured => _settings.Configured;

    /// <summary>The value of <paramref name="field"/> in the secret at <paramref name="mount"/>/<paramref name="path"/>.</summary>
    public async Task<Result<string>> ReadFieldAsync(string mount, string path, string field, CancellationToken ct)
    {
        if (!_settings.Configured)
        {
            return CredentialErrors.ForeignReference("hcvault:// references need the deployment's HashiCorp Vault (Integrations:Vault:HashiCorp:Address); none is configured.");
        }
        var key = $"{mount}/{path}";
        if (!_reads.TryGetValue(key, out var cached) || cached.Until <= _clock.GetUtcNow())
        {
            if (_guard is not null && (await _guard.CheckAsync(_settings.Address!, ct)).Error is { } refused)
            {
                return refused with { Detail = $"The address of {_name} is refused by the egress guard: {refused.Detail}" };
            }
            var read = await ReadAsync(mount, path, ct);
            if (!read.IsSuccess) return read.Error!;
            cached = (_clock.GetUtcNow() + _settings.CacheTtl, read.Value);
            _reads[key] = cached;
        }
        return cached.Data.TryGetValue(field, out var value)
            ? value
            : CredentialErrors.NotFound($"The secret at {mount}/{path} in {_name} has no field '{field}'.");
    }

    private async Task<Result<IReadOnlyDictionary<string, string>>> ReadAsync(string mount, string path, CancellationToken ct)
    {
        for (var attempt = 0; ; attempt++)
        {
            var token = await TokenAsync(ct);
            if (!token.IsSuccess) return token.Error!;
            using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(_settings.Address!, $"v1/{mount}/data/{path}"));
            request.Headers.Add("X-Vault-Token", token.Value);
            if (!string.IsNullOrEmpty(_settings.Namespace)) request.Headers.Add("X-Vault-Namespace", _settings.Namespace);
            HttpResponseMessage response;
            try
            {
                response = await _http.SendAsync(request, ct);
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException && !ct.IsCancellationRequested)
            {
                return Unreachable(e);
            }
            using (response)
            {
                if (response.StatusCode == HttpStatusCode.Forbidden && attempt == 0 && _settings.Token is null)
                {
                    _appRoleToken = null; // the AppRole token may have been revoked or expired early: log in once more
                    continue;
                }
                if (response.StatusCode == HttpStatusCode.NotFound)
                {
                    return CredentialErrors.NotFound($"{Capitalized} has no secret at {mount}/{path} (KV version 2).");
                }
                if (response.StatusCode == HttpStatusCode.Forbidden)
                {
                    return CredentialErrors.Denied($"{Capitalized} refused the token for {mount}/{path}: its policy must allow reading {mount}/data/{path}.");
                }
                if (!response.IsSuccessStatusCode)
                {
                    return Error.UpstreamError($"{Capitalized} answered {(int)response.StatusCode} for {mount}/{path}.");
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
                    return Error.UpstreamError($"The answer of {_name} for {mount}/{path} is not a KV version 2 secret.");
                }
            }
        }
    }

    private async Task<Result<string>> TokenAsync(CancellationToken ct)
    {
        if (!string.IsNullOrEmpty(_settings.Token)) return _settings.Token;
        if (_appRoleToken is { } current && current.Until > _clock.GetUtcNow()) return current.Token;
        await _login.WaitAsync(ct);
        try
        {
            // Another caller may have logged in while this one waited: one login per expiry.
            if (_appRoleToken is { } fresh && fresh.Until > _clock.GetUtcNow()) return fresh.Token;
            using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(_settings.Address!, "v1/auth/approle/login"))
            {
                Content = JsonContent.Create(new Dictionary<string, string> { ["role_id"] = _settings.RoleId!, ["secret_id"] = _settings.SecretId! }),
            };
            if (!string.IsNullOrEmpty(_settings.Namespace)) request.Headers.Add("X-Vault-Namespace", _settings.Namespace);
            try
            {
                using var response = await _http.SendAsync(request, ct);
                if (!response.IsSuccessStatusCode)
                {
                    return CredentialErrors.Denied($"{Capitalized} refused the AppRole login ({(int)response.StatusCode}): check the role id and secret id.");
                }
                var auth = (await response.Content.ReadFromJsonAsync<JsonElement>(ct)).GetProperty("auth");
                var token = auth.GetProperty("client_token").GetString()!;
                var lease = TimeSpan.FromSeconds(auth.TryGetProperty("lease_duration", out var seconds) ? seconds.GetInt64() : 0);
                // Renewed by logging in again at 80 % of the lease (a lease of 0 never expires).
                _appRoleToken = (token, lease > TimeSpan.Zero ? _clock.GetUtcNow() + lease * 0.8 : DateTimeOffset.MaxValue);
                return token;
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException && !ct.IsCancellationRequested)
            {
                return Unreachable(e);
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
            {
                return Error.UpstreamError($"The AppRole login at {_name} ({_settings.Address!.Authority}) failed ({e.GetType().Name}).");
            }
        }
        finally
        {
            _login.Release();
        }
    }

    private string Capitalized => char.ToUpperInvariant(_name[0]) + _name[1..];

    private Error Unreachable(Exception e) => SsrfGuard.IsBlocked(e)
        ? Error.SsrfBlocked($"The address of {_name} is refused by the egress guard ({_settings.Address!.Authority}).")
        : e.InnerException is System.Security.Authentication.AuthenticationException
            ? Error.UpstreamUnreachable($"TLS with {_name} at {_settings.Address!.Authority} failed: its certificate is not trusted (check ca_certificate).")
            : Error.UpstreamUnreachable($"{Capitalized} at {_settings.Address!.Authority} did not answer ({e.GetType().Name}).");

    public void Dispose()
    {
        _http.Dispose();
        _login.Dispose();
    }
}

/// <summary>
/// Tenants' own HashiCorp Vaults: one client per <c>hashicorp_vault</c> credential version (its AppRole token and its
/// reads cached per connection, a rotated credential gets a new client), reached through the egress guard like any
/// tenant destination, trusting its <c>ca_certificate</c> when it has one. The caller has checked that the credential
/// is the asking tenant's; the cache is keyed by the credential's id, which no other tenant's row has.
/// </summary>
public sealed class TenantVaults(SsrfGuard guard, TimeProvider clock, HashiCorpVaultSettings deployment) : IDisposable
{
    private const int MaxConnections = 1_000;
    private readonly ConcurrentDictionary<(Guid CredentialId, int Version), HashiCorpVault> _vaults = new();

    /// <summary>How long a tenant's Vault read is kept: the deployment's setting.</summary>
    public TimeSpan CacheTtl => deployment.CacheTtl;

    public HashiCorpVault For(Guid credentialId, int version, string name, HashiCorpVaultSettings settings)
    {
        if (_vaults.TryGetValue((credentialId, version), out var vault)) return vault;
        if (_vaults.Count >= MaxConnections) _vaults.Clear(); // not disposed: a read may still be using one
        var handler = guard.CreateHandler();
        if (settings.TrustedRoots is { } roots) handler.SslOptions.RemoteCertificateValidationCallback = ClientCertificate.ChainsTo(roots);
        var created = new HashiCorpVault(settings, clock, handler, guard, $"the HashiCorp Vault connection '{name}'");
        if (_vaults.TryAdd((credentialId, version), created)) return created;
        created.Dispose();
        return _vaults[(credentialId, version)];
    }

    public void Dispose()
    {
        foreach (var vault in _vaults.Values) vault.Dispose();
        _vaults.Clear();
    }
}
