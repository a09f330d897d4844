using System.Text.Json;
using System.Text.Json.Serialization;
using Integrations.Common;

namespace Integrations.Infrastructure.Vault;

public static class CredentialTypes
{
    public const string ApiKey = "api_key";
    public const string BearerToken = "bearer_token";
    public const string BasicAuth = "basic_auth";
    public const string Custom = "custom";

    /// <summary>OAuth 2.0 client credentials: <c>fields</c> token_url, client_id, client_secret (scope, audience); resolves to an access token.</summary>
    public const string OAuth2ClientCredentials = "oauth2_client_credentials";

    /// <summary>An OAuth 2.0 refresh token: <c>fields</c> token_url, client_id, refresh_token (client_secret, scope); resolves to an access token.</summary>
    public const string OAuth2RefreshToken = "oauth2_refresh_token";

    /// <summary>A TLS client certificate and its key (<see cref="ClientCertificate"/>): mutual TLS, no header.</summary>
    public const string ClientCertificate = "client_certificate";

    /// <summary>
    /// A tenant's own HashiCorp Vault connection (<see cref="HashiCorpVaultSettings.FromFields"/>): named in
    /// <c>hcvault://&lt;name&gt;@mount/path#field</c> references, never sent anywhere itself.
    /// </summary>
    public const string HashiCorpVault = "hashicorp_vault";

    /// <summary>The types that resolve to an access token obtained from a token endpoint (<see cref="OAuthClientTokens"/>).</summary>
    public static bool IsOAuth(string type) => type is OAuth2ClientCredentials or OAuth2RefreshToken;

    /// <summary>An <c>encrypted://</c> or <c>env://</c> secret: one opaque string, used like an API key.</summary>
    public const string Opaque = "opaque";

    public static readonly string[] Storable = [ApiKey, BearerToken, BasicAuth, Custom, OAuth2ClientCredentials, OAuth2RefreshToken, ClientCertificate, HashiCorpVault];
}

/// <summary>Who asks to resolve a credential: a tenant object (grantable) or, for <c>env://</c>, the system itself.</summary>
public readonly record struct CredentialAccessor(string Type, Guid Id)
{
    public const string Integration = "integration";
    public const string McpServer = "mcp_server";
    public const string Datasource = "datasource";
    public const string Connection = "connection";
    public const string SystemType = "system";

    public static readonly string[] Grantable = [Integration, McpServer, Datasource, Connection];

    /// <summary>The service's own configuration: the only accessor that may resolve <c>env://</c>, and only for system callers.</summary>
    public static CredentialAccessor System { get; } = new(SystemType, Guid.Empty);

    public bool IsSystem => Type == SystemType;

    public override string ToString() => IsSystem ? SystemType : $"{Type}:{Id}";
}

/// <summary>
/// A resolved secret, in memory only, for the one request that resolved it. It never serializes and its
/// <see cref="ToString"/> is redacted, so it cannot land in a response, a log line or an exception by accident.
/// </summary>
[JsonConverter(typeof(RefuseToSerialize))]
public sealed class ResolvedCredential
{
    private ResolvedCredential(string type, string reference, Guid? credentialId, int? version)
    {
        Type = type;
        Reference = reference;
        CredentialId = credentialId;
        Version = version;
    }

    public string Type { get; }

    /// <summary>The reference it was resolved from, in its loggable form (<see cref="CredentialReference.Describe"/>).</summary>
    public string Reference { get; }

    public Guid? CredentialId { get; }

    public int? Version { get; }

    /// <summary>The key or token (api_key, bearer_token, opaque; for the OAuth types the access token obtained with them).</summary>
    public string? Value { get; private init; }

    public string? Username { get; private init; }

    public string? Password { get; private init; }

    public IReadOnlyDictionary<string, string> Fields { get; private init; } = new Dictionary<string, string>();

    /// <summary>The single token a header-authenticated API takes: the key or token, or a custom credential's <c>api_key</c>/<c>token</c> field.</summary>
    public string? Token => Type switch
    {
        CredentialTypes.ApiKey or CredentialTypes.BearerToken or CredentialTypes.Opaque or CredentialTypes.OAuth2ClientCredentials
            or CredentialTypes.OAuth2RefreshToken => Value,
        CredentialTypes.Custom => Fields.GetValueOrDefault("api_key") ?? Fields.GetValueOrDefault("token"),
        _ => null,
    };

    /// <summary>
    /// Every string the credential holds that must not leave in an output kept as evidence: the key or token, the password
    /// and every field (a field such as a token URL is taken too: wrongly hiding one is the safe mistake).
    /// </summary>
    public IReadOnlyCollection<string> SecretValues =>
        [.. new[] { Value, Password }.OfType<string>(), .. Fields.Values];

    public override string ToString() => $"ResolvedCredential({Type}, {Reference}, secret redacted)";

    /// <summary>This OAuth credential with the access token it was exchanged for; the client secret and refresh token stay out of it.</summary>
    internal ResolvedCredential WithAccessToken(string token) =>
        new(Type, Reference, CredentialId, Version)
        {
            Value = token,
            Fields = Fields.Where(f => f.Key is not (OAuthClientTokens.ClientSecret or OAuthClientTokens.RefreshToken)).ToDictionary(),
        };

    internal static ResolvedCredential Opaque(string reference, string value) =>
        new(CredentialTypes.Opaque, CredentialReference.Describe(reference), null, null) { Value = value };

    internal static ResolvedCredential FromPayload(string type, string reference, Guid credentialId, int version, byte[] payload)
    {
        var material = JsonSerializer.Deserialize<SecretMaterial>(payload, SecretMaterial.Json)
            ?? throw new VaultIntegrityException("The decrypted credential is not in the expected format.");
        return new ResolvedCredential(type, reference, credentialId, version)
        {
            Value = material.Secret,
            Username = material.Username,
            Password = material.Password,
            Fields = material.Fields ?? new Dictionary<string, string>(),
        };
    }

    private sealed class RefuseToSerialize : JsonConverter<ResolvedCredential>
    {
        public override ResolvedCredential Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
            throw new NotSupportedException("A resolved credential is never read from JSON.");

        public override void Write(Utf8JsonWriter writer, ResolvedCredential value, JsonSerializerOptions options) =>
            throw new NotSupportedException("A resolved credential is never written as JSON.");
    }
}

/// <summary>What a vault row's ciphertext holds: the secret fields of one credential type, as JSON.</summary>
public sealed record SecretMaterial(
    string? Secret = null,
    string? Username = null,
    string? Password = null,
    IReadOnlyDictionary<string, string>? Fields = null)
{
    internal static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    public byte[] ToPayload() => JsonSerializer.SerializeToUtf8Bytes(this, Json);

    public override string ToString() => "SecretMaterial(redacted)";
}

/// <summary>The stable codes of credential failures.</summary>
public static class CredentialErrors
{
    public static Error NotFound(string detail = "The credential does not exist or was deleted; store it again and attach the new reference.") =>
        new("credential_not_found", 422, "Credential not found.", detail);

    public static Error Denied(string detail) => new("credential_denied", 403, "Credential access denied.", detail);

    /// <summary>The key service that wraps the vault's data keys (AWS KMS) could not be asked; nothing was sealed or opened.</summary>
    public static Error KeyServiceUnavailable(string detail) => new("key_service_unavailable", 503, "Key service unavailable.", detail);

    public static Error Unreadable(string detail) => new("credential_unreadable", 500, "Credential cannot be decrypted.", detail);

    /// <summary>The credential is bound to other hosts than the destination it would be sent to.</summary>
    public static Error HostNotAllowed(string detail) => new("credential_host_not_allowed", 422, "Credential not allowed for this destination.", detail);

    /// <summary>The tenant's credential policy requires allowed_hosts and the credential (or encrypted:// reference) has none.</summary>
    public static Error Unbound(string detail) => new("credential_unbound", 422, "Credential not bound to hosts.", detail);

    /// <summary>An encrypted:// reference that does not decrypt for this tenant (another tenant's, or altered).</summary>
    public static Error ForeignReference(string detail) => new("credential_reference_invalid", 422, "Credential reference not usable.", detail);
}
