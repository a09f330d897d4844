using System.Text;

namespace Integrations.Infrastructure.Vault;

/// <summary>
/// What a data key is bound to: a wrapped key copied into another row, tenant or version does not unwrap. The local
/// provider uses it as AES-GCM associated data, AWS KMS as the encryption context (which KMS checks on Decrypt and
/// writes to CloudTrail, so it holds ids only, never a secret).
/// </summary>
public sealed record DataKeyBinding(string Purpose, string TenantId, Guid? CredentialId = null, int? Version = null)
{
    public byte[] ToBytes() => Encoding.UTF8.GetBytes(CredentialId is { } id
        ? $"{Purpose}\0{TenantId}\0{id:D}\0{Version}"
        : $"{Purpose}\0{TenantId}");

    public Dictionary<string, string> ToEncryptionContext()
    {
        var context = new Dictionary<string, string>(StringComparer.Ordinal) { ["purpose"] = Purpose, ["tenant"] = TenantId };
        if (CredentialId is { } id) context["credential"] = id.ToString("D");
        if (Version is { } version) context["version"] = version.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return context;
    }
}

/// <summary>A fresh data key: the plaintext (the caller zeroes it) and the same key wrapped under <see cref="KeyId"/>.</summary>
public sealed record DataKey(byte[] Plaintext, byte[] Wrapped, string KeyId)
{
    public override string ToString() => $"DataKey({KeyId}, plaintext redacted)";
}

/// <summary>
/// Where the vault's data keys are wrapped: the local master keys from configuration or an AWS KMS key
/// (<c>Integrations:Vault:Provider</c>). New seals use the configured provider's current key; a row is opened by
/// whichever provider holds the key id stored with it, so switching providers or keys is a rotation, not a cut-over.
/// </summary>
public interface IMasterKeyProvider
{
    /// <summary>The provider's name in configuration: <c>local</c> or <c>aws-kms</c>.</summary>
    string Name { get; }

    /// <summary>The key id new data keys are wrapped under, as stored in <c>credentials.key_id</c>.</summary>
    string CurrentKeyId { get; }

    /// <summary>Whether <paramref name="keyId"/> is one of this provider's ids (by form: it may still be unconfigured).</summary>
    bool Holds(string keyId);

    Task<DataKey> GenerateDataKeyAsync(DataKeyBinding binding, CancellationToken ct);

    /// <summary>Wraps an existing data key under the current key (rotation re-wraps without touching ciphertext).</summary>
    Task<byte[]> WrapAsync(byte[] dataKey, DataKeyBinding binding, CancellationToken ct);

    /// <summary>The plaintext data key, which the caller zeroes; <see cref="VaultIntegrityException"/> when it does not unwrap for the binding.</summary>
    Task<byte[]> UnwrapAsync(string keyId, byte[] wrapped, DataKeyBinding binding, CancellationToken ct);
}

/// <summary>
/// The external key service could not be asked (unreachable, timed out, throttled, or the key is disabled or not
/// ours to use): nothing was sealed or opened, and nothing falls back to another key. Never carries key material.
/// </summary>
public sealed class KeyServiceUnavailableException(string message, Exception? inner = null) : Exception(message, inner);
