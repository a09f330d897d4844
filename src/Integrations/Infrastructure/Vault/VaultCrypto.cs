using System.Buffers.Text;
using System.Security.Cryptography;
using System.Text;

namespace Integrations.Infrastructure.Vault;

/// <summary>One credential version as stored: the secret under its data key, and the data key wrapped by a master key.</summary>
public sealed record SealedSecret(byte[] Ciphertext, byte[] Nonce, byte[] Tag, byte[] WrappedKey, string KeyId);

/// <summary>Decryption refused: the data was changed, moved to another row or tenant, or is not ours. Never carries data.</summary>
public sealed class VaultIntegrityException(string message) : CryptographicException(message);

/// <summary>The master key a row or blob names is not configured (it was removed before <c>rotate-master-key</c> ran).</summary>
public sealed class MasterKeyUnavailableException(string keyId)
    : CryptographicException($"The master key '{keyId}' is not configured; add it under Integrations:Vault:PreviousKeys until rotate-master-key has run.")
{
    public string KeyId { get; } = keyId;
}

/// <summary>
/// Envelope encryption for the vault. Each credential version gets a random 256-bit data key; the secret is
/// AES-256-GCM under it with a random 96-bit nonce and associated data binding tenant, credential id and version,
/// so a ciphertext copied into another row, tenant or version does not decrypt. The data key is itself
/// AES-256-GCM-wrapped by the current master key with the same binding. <c>encrypted://</c> references are
/// self-contained blobs under the master key, bound to the tenant that made them.
/// </summary>
public sealed class VaultCrypto(MasterKeys keys)
{
    private const int KeySize = 32;
    private const int NonceSize = 12;
    private const int TagSize = 16;
    private const byte BlobVersion = 1;

    public MasterKeys Keys => keys;

    public SealedSecret Seal(ReadOnlySpan<byte> plaintext, string tenantId, Guid credentialId, int version)
    {
        var dataKey = RandomNumberGenerator.GetBytes(KeySize);
        try
        {
            var nonce = RandomNumberGenerator.GetBytes(NonceSize);
            var ciphertext = new byte[plaintext.Length];
            var tag = new byte[TagSize];
            using (var aes = new AesGcm(dataKey, TagSize))
            {
                aes.Encrypt(nonce, plaintext, ciphertext, tag, SecretBinding(tenantId, credentialId, version));
            }
            var wrapped = Wrap(keys.Current, dataKey, KeyBinding(tenantId, credentialId, version));
            return new SealedSecret(ciphertext, nonce, tag, wrapped, keys.Current.Id);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(dataKey);
        }
    }

    public byte[] Open(SealedSecret secret, string tenantId, Guid credentialId, int version)
    {
        var dataKey = Unwrap(secret.KeyId, secret.WrappedKey, KeyBinding(tenantId, credentialId, version));
        try
        {
            if (secret.Nonce.Length != NonceSize || secret.Tag.Length != TagSize) throw Integrity();
            var plaintext = new byte[secret.Ciphertext.Length];
            using var aes = new AesGcm(dataKey, TagSize);
            aes.Decrypt(secret.Nonce, secret.Ciphertext, secret.Tag, plaintext, SecretBinding(tenantId, credentialId, version));
            return plaintext;
        }
        catch (AuthenticationTagMismatchException)
        {
            throw Integrity();
        }
        finally
        {
            CryptographicOperations.ZeroMemory(dataKey);
        }
    }

    /// <summary>Re-wraps a data key under the current master key; the secret's ciphertext is untouched.</summary>
    public byte[] Rewrap(string keyId, byte[] wrappedKey, string tenantId, Guid credentialId, int version)
    {
        var binding = KeyBinding(tenantId, credentialId, version);
        var dataKey = Unwrap(keyId, wrappedKey, binding);
        try
        {
            return Wrap(keys.Current, dataKey, binding);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(dataKey);
        }
    }

    /// <summary>An <c>encrypted://</c> reference for <paramref name="tenantId"/>: version, key id, nonce, tag, ciphertext, base64url.</summary>
    public string EncryptReference(ReadOnlySpan<byte> plaintext, string tenantId)
    {
        var key = keys.Current;
        var blob = new byte[1 + 4 + NonceSize + TagSize + plaintext.Length];
        blob[0] = BlobVersion;
        Convert.FromHexString(key.Id).CopyTo(blob, 1);
        var nonce = blob.AsSpan(5, NonceSize);
        RandomNumberGenerator.Fill(nonce);
        using (var aes = new AesGcm(key.Bytes, TagSize))
        {
            aes.Encrypt(nonce, plaintext, blob.AsSpan(5 + NonceSize + TagSize), blob.AsSpan(5 + NonceSize, TagSize), ReferenceBinding(tenantId));
        }
        return CredentialReference.EncryptedScheme + Base64Url.EncodeToString(blob);
    }

    public byte[] DecryptReference(string reference, string tenantId)
    {
        var (keyId, blob) = ReadBlob(reference);
        if (!keys.TryGet(keyId, out var key)) throw new MasterKeyUnavailableException(keyId);
        var plaintext = new byte[blob.Length - (5 + NonceSize + TagSize)];
        try
        {
            using var aes = new AesGcm(key.Bytes, TagSize);
            aes.Decrypt(blob.AsSpan(5, NonceSize), blob.AsSpan(5 + NonceSize + TagSize), blob.AsSpan(5 + NonceSize, TagSize), plaintext, ReferenceBinding(tenantId));
            return plaintext;
        }
        catch (AuthenticationTagMismatchException)
        {
            throw Integrity();
        }
    }

    /// <summary>The master key id an <c>encrypted://</c> reference was made under.</summary>
    public static string ReferenceKeyId(string reference) => ReadBlob(reference).KeyId;

    private static (string KeyId, byte[] Blob) ReadBlob(string reference)
    {
        if (!reference.StartsWith(CredentialReference.EncryptedScheme, StringComparison.Ordinal)) throw Integrity();
        byte[] blob;
        try
        {
            blob = Base64Url.DecodeFromChars(reference.AsSpan(CredentialReference.EncryptedScheme.Length));
        }
        catch (FormatException)
        {
            throw Integrity();
        }
        if (blob.Length < 1 + 4 + NonceSize + TagSize || blob[0] != BlobVersion) throw Integrity();
        return (Convert.ToHexStringLower(blob.AsSpan(1, 4)), blob);
    }

    private static byte[] Wrap(MasterKey key, byte[] dataKey, byte[] binding)
    {
        var wrapped = new byte[NonceSize + KeySize + TagSize];
        var nonce = wrapped.AsSpan(0, NonceSize);
        RandomNumberGenerator.Fill(nonce);
        using var aes = new AesGcm(key.Bytes, TagSize);
        aes.Encrypt(nonce, dataKey, wrapped.AsSpan(NonceSize, KeySize), wrapped.AsSpan(NonceSize + KeySize, TagSize), binding);
        return wrapped;
    }

    private byte[] Unwrap(string keyId, byte[] wrapped, byte[] binding)
    {
        if (!keys.TryGet(keyId, out var key)) throw new MasterKeyUnavailableException(keyId);
        if (wrapped.Length != NonceSize + KeySize + TagSize) throw Integrity();
        var dataKey = new byte[KeySize];
        try
        {
            using var aes = new AesGcm(key.Bytes, TagSize);
            aes.Decrypt(wrapped.AsSpan(0, NonceSize), wrapped.AsSpan(NonceSize, KeySize), wrapped.AsSpan(NonceSize + KeySize, TagSize), dataKey, binding);
            return dataKey;
        }
        catch (AuthenticationTagMismatchException)
        {
            throw Integrity();
        }
    }

    private static byte[] SecretBinding(string tenantId, Guid credentialId, int version) =>
        Encoding.UTF8.GetBytes($"cus-vault/secret/v1\0{tenantId}\0{credentialId:D}\0{version}");

    private static byte[] KeyBinding(string tenantId, Guid credentialId, int version) =>
        Encoding.UTF8.GetBytes($"cus-vault/data-key/v1\0{tenantId}\0{credentialId:D}\0{version}");

    private static byte[] ReferenceBinding(string tenantId) => Encoding.UTF8.GetBytes($"encrypted-ref/v1\0{tenantId}");

    private static VaultIntegrityException Integrity() =>
        new("The encrypted credential failed its integrity check: it was altered, moved from another row or tenant, or is not ours.");
}
