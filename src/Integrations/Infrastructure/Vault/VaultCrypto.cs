using System.Buffers.Binary;
using System.Buffers.Text;
using System.Security.Cryptography;
using System.Text;

namespace Integrations.Infrastructure.Vault;

/// <summary>One credential version as stored: the secret under its data key, and the data key wrapped by a master key.</summary>
public sealed record SealedSecret(byte[] Ciphertext, byte[] Nonce, byte[] Tag, byte[] WrappedKey, string KeyId);

/// <summary>Decryption refused: the data was changed, moved to another row or tenant, or is not ours. Never carries data.</summary>
public sealed class VaultIntegrityException(string message) : CryptographicException(message);

/// <summary>The master key a row or blob names is not configured (it was removed before <c>rotate-master-key</c> ran).</summary>
public sealed class MasterKeyUnavailableException(string keyId, string? message = null)
    : CryptographicException(message ?? $"The master key '{keyId}' is not configured; add it under Integrations:Vault:PreviousKeys until rotate-master-key has run.")
{
    public string KeyId { get; } = keyId;
}

/// <summary>
/// Envelope encryption for the vault. Each credential version gets its own 256-bit data key from the configured
/// <see cref="IMasterKeyProvider"/> (local master keys or AWS KMS), wrapped with a binding of tenant, credential id and
/// version; the secret is AES-256-GCM under the data key with a random 96-bit nonce and the same binding as associated
/// data, so a ciphertext copied into another row, tenant or version does not decrypt. A row is opened by the provider
/// that holds its stored key id, whichever provider is current. <c>encrypted://</c> references are self-contained
/// blobs bound to the tenant that made them: version 1 directly under a local master key, version 2 (written when the
/// provider is not local) with a data key wrapped by the provider inside the blob.
/// </summary>
public sealed class VaultCrypto
{
    private const int KeySize = 32;
    private const int NonceSize = 12;
    private const int TagSize = 16;
    private const byte LocalBlob = 1;
    private const byte EnvelopeBlob = 2;

    private const string SecretPurpose = "cus-vault/data-key/v1";
    private const string ReferencePurpose = "encrypted-ref/data-key/v2";

    private readonly MasterKeys _keys;
    private readonly IMasterKeyProvider _current;
    private readonly IReadOnlyList<IMasterKeyProvider> _providers;

    public VaultCrypto(MasterKeys keys, IEnumerable<IMasterKeyProvider> providers, string currentProvider)
    {
        _keys = keys;
        _providers = [.. providers];
        _current = _providers.FirstOrDefault(p => p.Name == currentProvider) ?? throw new InvalidOperationException(
            $"{MasterKeys.ProviderKey} is '{currentProvider}', which is not configured here; it is one of: {string.Join(", ", _providers.Select(p => p.Name))}.");
    }

    /// <summary>The key id new seals are wrapped under (rotation moves every row to it).</summary>
    public string CurrentKeyId => _current.CurrentKeyId;

    public async Task<SealedSecret> SealAsync(ReadOnlyMemory<byte> plaintext, string tenantId, Guid credentialId, int version, CancellationToken ct)
    {
        var dataKey = await _current.GenerateDataKeyAsync(new DataKeyBinding(SecretPurpose, tenantId, credentialId, version), ct);
        try
        {
            var nonce = RandomNumberGenerator.GetBytes(NonceSize);
            var ciphertext = new byte[plaintext.Length];
            var tag = new byte[TagSize];
            using (var aes = new AesGcm(dataKey.Plaintext, TagSize))
            {
                aes.Encrypt(nonce, plaintext.Span, ciphertext, tag, SecretBinding(tenantId, credentialId, version));
            }
            return new SealedSecret(ciphertext, nonce, tag, dataKey.Wrapped, dataKey.KeyId);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(dataKey.Plaintext);
        }
    }

    public async Task<byte[]> OpenAsync(SealedSecret secret, string tenantId, Guid credentialId, int version, CancellationToken ct)
    {
        var dataKey = await UnwrapAsync(secret.KeyId, secret.WrappedKey, new DataKeyBinding(SecretPurpose, tenantId, credentialId, version), ct);
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

    /// <summary>Re-wraps a data key under the current key (<see cref="CurrentKeyId"/>); the secret's ciphertext is untouched.</summary>
    public async Task<byte[]> RewrapAsync(string keyId, byte[] wrappedKey, string tenantId, Guid credentialId, int version, CancellationToken ct)
    {
        var binding = new DataKeyBinding(SecretPurpose, tenantId, credentialId, version);
        var dataKey = await UnwrapAsync(keyId, wrappedKey, binding, ct);
        try
        {
            return await _current.WrapAsync(dataKey, binding, ct);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(dataKey);
        }
    }

    /// <summary>
    /// An <c>encrypted://</c> reference for <paramref name="tenantId"/>, base64url. Version 1: key id (4 bytes), nonce,
    /// tag, ciphertext. Version 2: key id length and key id, wrapped data key length (2 bytes) and wrapped key, nonce, tag, ciphertext.
    /// </summary>
    public async Task<string> EncryptReferenceAsync(ReadOnlyMemory<byte> plaintext, string tenantId, CancellationToken ct)
    {
        if (_current is LocalMasterKeyProvider) return EncryptLocalReference(plaintext.Span, tenantId);

        var dataKey = await _current.GenerateDataKeyAsync(new DataKeyBinding(ReferencePurpose, tenantId), ct);
        try
        {
            var keyId = Encoding.UTF8.GetBytes(dataKey.KeyId);
            if (keyId.Length > byte.MaxValue || dataKey.Wrapped.Length > ushort.MaxValue) throw new InvalidOperationException("The key id or wrapped key is too long for an encrypted:// reference.");
            var header = 1 + 1 + keyId.Length + 2 + dataKey.Wrapped.Length;
            var blob = new byte[header + NonceSize + TagSize + plaintext.Length];
            blob[0] = EnvelopeBlob;
            blob[1] = (byte)keyId.Length;
            keyId.CopyTo(blob, 2);
            BinaryPrimitives.WriteUInt16BigEndian(blob.AsSpan(2 + keyId.Length), (ushort)dataKey.Wrapped.Length);
            dataKey.Wrapped.CopyTo(blob, 4 + keyId.Length);
            var nonce = blob.AsSpan(header, NonceSize);
            RandomNumberGenerator.Fill(nonce);
            using (var aes = new AesGcm(dataKey.Plaintext, TagSize))
            {
                aes.Encrypt(nonce, plaintext.Span, blob.AsSpan(header + NonceSize + TagSize), blob.AsSpan(header + NonceSize, TagSize), EnvelopeReferenceBinding(tenantId));
            }
            return CredentialReference.EncryptedScheme + Base64Url.EncodeToString(blob);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(dataKey.Plaintext);
        }
    }

    public async Task<byte[]> DecryptReferenceAsync(string reference, string tenantId, CancellationToken ct)
    {
        var blob = ReadBlob(reference);
        if (blob.Version == LocalBlob) return DecryptLocalReference(blob, tenantId);

        var dataKey = await UnwrapAsync(blob.KeyId, blob.Bytes[blob.Wrapped], new DataKeyBinding(ReferencePurpose, tenantId), ct);
        try
        {
            var body = blob.Bytes.AsSpan(blob.Body);
            var plaintext = new byte[body.Length - NonceSize - TagSize];
            using var aes = new AesGcm(dataKey, TagSize);
            aes.Decrypt(body[..NonceSize], body[(NonceSize + TagSize)..], body.Slice(NonceSize, TagSize), plaintext, EnvelopeReferenceBinding(tenantId));
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

    /// <summary>The master key id an <c>encrypted://</c> reference was made under.</summary>
    public static string ReferenceKeyId(string reference) => ReadBlob(reference).KeyId;

    internal static VaultIntegrityException Integrity() =>
        new("The encrypted credential failed its integrity check: it was altered, moved from another row or tenant, or is not ours.");

    private Task<byte[]> UnwrapAsync(string keyId, byte[] wrapped, DataKeyBinding binding, CancellationToken ct)
    {
        var provider = _providers.FirstOrDefault(p => p.Holds(keyId));
        if (provider is null)
        {
            throw new MasterKeyUnavailableException(keyId, keyId.StartsWith(AwsKmsMasterKeyProvider.KeyIdPrefix, StringComparison.Ordinal)
                ? $"The row was wrapped by the AWS KMS key '{keyId[AwsKmsMasterKeyProvider.KeyIdPrefix.Length..]}' and {AwsKmsSettings.Section} is not configured; configure it (Region, and access to that key) until rotate-master-key has run."
                : null);
        }
        return provider.UnwrapAsync(keyId, wrapped, binding, ct);
    }

    private string EncryptLocalReference(ReadOnlySpan<byte> plaintext, string tenantId)
    {
        var key = _keys.Current;
        var blob = new byte[1 + 4 + NonceSize + TagSize + plaintext.Length];
        blob[0] = LocalBlob;
        Convert.FromHexString(key.Id).CopyTo(blob, 1);
        var nonce = blob.AsSpan(5, NonceSize);
        RandomNumberGenerator.Fill(nonce);
        using (var aes = new AesGcm(key.Bytes, TagSize))
        {
            aes.Encrypt(nonce, plaintext, blob.AsSpan(5 + NonceSize + TagSize), blob.AsSpan(5 + NonceSize, TagSize), LocalReferenceBinding(tenantId));
        }
        return CredentialReference.EncryptedScheme + Base64Url.EncodeToString(blob);
    }

    private byte[] DecryptLocalReference(Blob blob, string tenantId)
    {
        if (!_keys.TryGet(blob.KeyId, out var key)) throw new MasterKeyUnavailableException(blob.KeyId);
        var plaintext = new byte[blob.Bytes.Length - (5 + NonceSize + TagSize)];
        try
        {
            using var aes = new AesGcm(key.Bytes, TagSize);
            aes.Decrypt(blob.Bytes.AsSpan(5, NonceSize), blob.Bytes.AsSpan(5 + NonceSize + TagSize), blob.Bytes.AsSpan(5 + NonceSize, TagSize), plaintext, LocalReferenceBinding(tenantId));
            return plaintext;
        }
        catch (AuthenticationTagMismatchException)
        {
            throw Integrity();
        }
    }

    private sealed record Blob(byte Version, string KeyId, byte[] Bytes, Range Wrapped, int Body);

    private static Blob ReadBlob(string reference)
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
        if (blob.Length >= 1 + 4 + NonceSize + TagSize && blob[0] == LocalBlob)
        {
            return new Blob(LocalBlob, Convert.ToHexStringLower(blob.AsSpan(1, 4)), blob, 0..0, 5);
        }
        if (blob.Length < 2 || blob[0] != EnvelopeBlob) throw Integrity();
        var keyIdEnd = 2 + blob[1];
        if (blob.Length < keyIdEnd + 2) throw Integrity();
        var wrappedEnd = keyIdEnd + 2 + BinaryPrimitives.ReadUInt16BigEndian(blob.AsSpan(keyIdEnd));
        if (blob.Length < wrappedEnd + NonceSize + TagSize) throw Integrity();
        string keyId;
        try
        {
            keyId = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(blob, 2, blob[1]);
        }
        catch (DecoderFallbackException)
        {
            throw Integrity();
        }
        return new Blob(EnvelopeBlob, keyId, blob, (keyIdEnd + 2)..wrappedEnd, wrappedEnd);
    }

    private static byte[] SecretBinding(string tenantId, Guid credentialId, int version) =>
        Encoding.UTF8.GetBytes($"cus-vault/secret/v1\0{tenantId}\0{credentialId:D}\0{version}");

    private static byte[] LocalReferenceBinding(string tenantId) => Encoding.UTF8.GetBytes($"encrypted-ref/v1\0{tenantId}");

    private static byte[] EnvelopeReferenceBinding(string tenantId) => Encoding.UTF8.GetBytes($"encrypted-ref/v2\0{tenantId}");
}
