using System.Security.Cryptography;

namespace Integrations.Infrastructure.Vault;

/// <summary>Data keys wrapped with AES-256-GCM by the master keys from configuration (<see cref="MasterKeys"/>).</summary>
public sealed class LocalMasterKeyProvider(MasterKeys keys) : IMasterKeyProvider
{
    public const string ProviderName = "local";

    private const int KeySize = 32;
    private const int NonceSize = 12;
    private const int TagSize = 16;

    public string Name => ProviderName;

    public string CurrentKeyId => keys.Current.Id;

    public bool Holds(string keyId) => keyId.Length == 8 && keyId.All(char.IsAsciiHexDigitLower);

    public Task<DataKey> GenerateDataKeyAsync(DataKeyBinding binding, CancellationToken ct)
    {
        var dataKey = RandomNumberGenerator.GetBytes(KeySize);
        return Task.FromResult(new DataKey(dataKey, Wrap(keys.Current, dataKey, binding.ToBytes()), keys.Current.Id));
    }

    public Task<byte[]> WrapAsync(byte[] dataKey, DataKeyBinding binding, CancellationToken ct) =>
        Task.FromResult(Wrap(keys.Current, dataKey, binding.ToBytes()));

    public Task<byte[]> UnwrapAsync(string keyId, byte[] wrapped, DataKeyBinding binding, CancellationToken ct)
    {
        if (!keys.TryGet(keyId, out var key)) throw new MasterKeyUnavailableException(keyId);
        if (wrapped.Length != NonceSize + KeySize + TagSize) throw VaultCrypto.Integrity();
        var dataKey = new byte[KeySize];
        try
        {
            using var aes = new AesGcm(key.Bytes, TagSize);
            aes.Decrypt(wrapped.AsSpan(0, NonceSize), wrapped.AsSpan(NonceSize, KeySize), wrapped.AsSpan(NonceSize + KeySize, TagSize), dataKey, binding.ToBytes());
            return Task.FromResult(dataKey);
        }
        catch (AuthenticationTagMismatchException)
        {
            throw VaultCrypto.Integrity();
        }
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
}
