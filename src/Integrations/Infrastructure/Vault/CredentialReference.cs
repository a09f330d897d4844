namespace Integrations.Infrastructure.Vault;

public enum CredentialReferenceKind { CusVault, Encrypted, Env, HashiCorp }

/// <summary>
/// A pointer to a secret, never the secret: <c>cus-vault://&lt;tenant&gt;/&lt;credential-id&gt;</c>,
/// <c>encrypted://&lt;base64&gt;</c>, <c>env://NAME</c> (system scope only), or
/// <c>hcvault://&lt;mount&gt;/tenants/&lt;tenant&gt;/&lt;path&gt;#&lt;field&gt;</c> (the deployment's HashiCorp Vault, KV version 2;
/// a tenant reaches only the paths under its own <c>tenants/&lt;tenant&gt;/</c>), or
/// <c>hcvault://&lt;connection&gt;@&lt;mount&gt;/&lt;path&gt;#&lt;field&gt;</c> (the tenant's own Vault: <c>connection</c> names
/// one of its <c>hashicorp_vault</c> credentials; any path, the Vault being its own).
/// </summary>
public sealed record CredentialReference(CredentialReferenceKind Kind, string Value, string? TenantId = null, Guid CredentialId = default)
{
    public const string HashiCorpScheme = "hcvault://";

    public const string CusVaultScheme = "cus-vault://";
    public const string EncryptedScheme = "encrypted://";
    public const string EnvScheme = "env://";

    /// <summary>
    /// Parses a reference for an object owned by <paramref name="tenantId"/> (or by the system when
    /// <paramref name="systemScope"/>); the error text tells the user what to do instead.
    /// </summary>
    public static bool TryParse(string? value, string tenantId, bool systemScope, out CredentialReference? reference, out string error)
    {
        reference = null;
        error = string.Empty;
        if (string.IsNullOrWhiteSpace(value))
        {
            error = "A credential reference is required.";
            return false;
        }
        if (value.StartsWith(CusVaultScheme, StringComparison.Ordinal))
        {
            var rest = value[CusVaultScheme.Length..];
            var slash = rest.IndexOf('/');
            if (slash <= 0 || !Guid.TryParse(rest[(slash + 1)..], out var credentialId))
            {
                error = "A vault reference looks like cus-vault://<tenant_id>/<credential_id>.";
                return false;
            }
            if (!systemScope && rest[..slash] != tenantId)
            {
                error = "The vault reference names another tenant: a credential can only be used by its own tenant.";
                return false;
            }
            reference = new CredentialReference(CredentialReferenceKind.CusVault, value, rest[..slash], credentialId);
            return true;
        }
        if (value.StartsWith(EncryptedScheme, StringComparison.Ordinal))
        {
            if (value.Length == EncryptedScheme.Length)
            {
                error = "An encrypted reference carries its ciphertext: encrypted://<base64>.";
                return false;
            }
            reference = new CredentialReference(CredentialReferenceKind.Encrypted, value);
            return true;
        }
        if (value.StartsWith(EnvScheme, StringComparison.Ordinal))
        {
            if (!systemScope)
            {
                error = "env:// references are for system configuration only; store the secret with POST /credentials and use its cus-vault:// reference.";
                return false;
            }
            reference = new CredentialReference(CredentialReferenceKind.Env, value);
            return true;
        }
        if (value.StartsWith(HashiCorpScheme, StringComparison.Ordinal))
        {
            if (!TryParseHashiCorp(value, out var connection, out var mount, out var path, out _))
            {
                error = "A HashiCorp Vault reference looks like hcvault://<mount>/tenants/<tenant_id>/<path>#<field> (the deployment's Vault) " +
                    "or hcvault://<connection>@<mount>/<path>#<field> (your own Vault, <connection> the name of a hashicorp_vault credential); " +
                    "letters, digits, '.', '_', '-' in each segment.";
                return false;
            }
            if (connection is not null)
            {
                if (systemScope)
                {
                    error = "A HashiCorp Vault connection is a tenant's: the service's own configuration reads the deployment's Vault (hcvault://<mount>/<path>#<field>).";
                    return false;
                }
                reference = new CredentialReference(CredentialReferenceKind.HashiCorp, value, tenantId);
                return true;
            }
            var tenantPrefix = $"tenants/{tenantId}/";
            if (!systemScope && !path.StartsWith(tenantPrefix, StringComparison.Ordinal))
            {
                error = $"A tenant reaches only its own secrets in HashiCorp Vault: the path must start with {tenantPrefix} (hcvault://{mount}/{tenantPrefix}...).";
                return false;
            }
            reference = new CredentialReference(CredentialReferenceKind.HashiCorp, value, systemScope ? null : tenantId);
            return true;
        }
        if (value.StartsWith("vault://", StringComparison.Ordinal))
        {
            error = "Legacy vault:// references are no longer supported; store the secret with POST /credentials and use its cus-vault:// reference.";
            return false;
        }
        error = value.Contains("://", StringComparison.Ordinal)
            ? "Unknown credential reference scheme; use cus-vault://, encrypted:// or hcvault://."
            : "This looks like a raw secret. Never send keys here: store it with POST /credentials and use the cus-vault:// reference it returns.";
        return false;
    }

    /// <summary>A form safe for audit details and logs: the encrypted blob is not repeated.</summary>
    public static string Describe(string? value) => value switch
    {
        null => "none",
        _ when value.StartsWith(EncryptedScheme, StringComparison.Ordinal) => "encrypted://(redacted)",
        _ when IsWellFormedVault(value) || IsWellFormedEnv(value) || TryParseHashiCorp(value, out _, out _, out _, out _) => value,
        _ => "(invalid)",
    };

    /// <summary>The credential id of a <c>cus-vault://</c> reference, whatever its tenant; null for other schemes or malformed ones.</summary>
    public static Guid? VaultCredentialId(string? value)
    {
        if (value is null || !value.StartsWith(CusVaultScheme, StringComparison.Ordinal)) return null;
        var rest = value[CusVaultScheme.Length..];
        var slash = rest.IndexOf('/');
        return slash > 0 && Guid.TryParse(rest[(slash + 1)..], out var id) ? id : null;
    }

    /// <summary>
    /// Splits <c>hcvault://[connection@]mount/path#field</c>; the connection (null for the deployment's Vault), every
    /// segment and the field are 1-128 of [A-Za-z0-9._-], never "." or "..".
    /// </summary>
    public static bool TryParseHashiCorp(string value, out string? connection, out string mount, out string path, out string field)
    {
        connection = null;
        mount = path = field = string.Empty;
        if (!value.StartsWith(HashiCorpScheme, StringComparison.Ordinal)) return false;
        var rest = value[HashiCorpScheme.Length..];
        var at = rest.IndexOf('@');
        var slash = rest.IndexOf('/');
        if (at >= 0)
        {
            if (slash >= 0 && at > slash) return false;
            connection = rest[..at];
            if (!Segment(connection)) return false;
            rest = rest[(at + 1)..];
        }
        var hash = rest.IndexOf('#');
        if (hash <= 0) return false;
        field = rest[(hash + 1)..];
        var segments = rest[..hash].Split('/');
        if (segments.Length < 2 || !Segment(field) || !segments.All(Segment)) return false;
        mount = segments[0];
        path = string.Join('/', segments[1..]);
        return true;

        static bool Segment(string s) => s.Length is > 0 and <= 128 && s is not ("." or "..")
            && s.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-');
    }

    public static string ForVault(string tenantId, Guid credentialId) => $"{CusVaultScheme}{tenantId}/{credentialId:D}";

    // Only references of the documented shapes are repeated in logs and audit details: anything else may be a pasted secret.
    private static bool IsWellFormedVault(string value) =>
        VaultCredentialId(value) is not null && value[CusVaultScheme.Length..value.LastIndexOf('/')].All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.');

    private static bool IsWellFormedEnv(string value) =>
        value.StartsWith(EnvScheme, StringComparison.Ordinal) && value.Length > EnvScheme.Length && value.Length <= EnvScheme.Length + 128 &&
        value[EnvScheme.Length..].All(c => char.IsAsciiLetterOrDigit(c) || c == '_');
}
