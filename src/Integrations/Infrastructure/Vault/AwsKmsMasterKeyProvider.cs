using System.Collections.Concurrent;
using System.Security.Cryptography;
using Amazon;
using Amazon.KeyManagementService;
using Amazon.KeyManagementService.Model;
using Amazon.Runtime;
using Microsoft.Extensions.Configuration;

namespace Integrations.Infrastructure.Vault;

/// <summary>
/// The AWS KMS key that wraps the vault's data keys, from <c>Integrations:Vault:Kms</c>: <c>KeyId</c> (the key's ARN
/// or id; stored with every row it wraps, so a new one is a rotation), <c>Region</c>, an optional <c>ServiceUrl</c>
/// (a VPC endpoint), optional <c>AccessKeyId</c>/<c>SecretAccessKey</c> (otherwise the SDK's default chain: instance
/// role, environment, profile), and <c>DataKeyCacheTtl</c> (default 5 minutes, 0 turns the cache off).
/// </summary>
public sealed record AwsKmsSettings(string? KeyId, string? Region, Uri? ServiceUrl, string? AccessKeyId, string? SecretAccessKey, TimeSpan DataKeyCacheTtl)
{
    public const string Section = MasterKeys.Section + ":Kms";

    public bool Configured => !string.IsNullOrWhiteSpace(KeyId) || !string.IsNullOrWhiteSpace(Region) || ServiceUrl is not null;

    public static AwsKmsSettings FromConfiguration(IConfiguration configuration)
    {
        var section = configuration.GetSection(Section);
        var url = section["ServiceUrl"];
        Uri? serviceUrl = null;
        if (!string.IsNullOrWhiteSpace(url) && (!Uri.TryCreate(url, UriKind.Absolute, out serviceUrl) || serviceUrl.Scheme is not ("https" or "http")))
        {
            throw new InvalidOperationException($"{Section}:ServiceUrl must be an http(s) URL, not '{url}'.");
        }
        var settings = new AwsKmsSettings(section["KeyId"], section["Region"], serviceUrl, section["AccessKeyId"], section["SecretAccessKey"],
            section.GetValue("DataKeyCacheTtl", TimeSpan.FromMinutes(5)));
        if (settings.Configured && string.IsNullOrWhiteSpace(settings.Region))
        {
            throw new InvalidOperationException($"{Section}:Region is required with AWS KMS (the region the key lives in, for example eu-west-1).");
        }
        if (string.IsNullOrEmpty(settings.AccessKeyId) != string.IsNullOrEmpty(settings.SecretAccessKey))
        {
            throw new InvalidOperationException($"{Section} needs both AccessKeyId and SecretAccessKey, or neither (the SDK's default credential chain).");
        }
        return settings;
    }
}

/// <summary>
/// Data keys generated (<c>GenerateDataKey</c>) and unwrapped (<c>Decrypt</c>) by an AWS KMS key; rotation re-wraps
/// an existing data key under the new key with <c>Encrypt</c>. The key id is stored as <c>kms:&lt;KeyId&gt;</c>, and
/// every call carries the row's binding as its encryption context. Unwrapped data keys are kept in memory for
/// <see cref="AwsKmsSettings.DataKeyCacheTtl"/>: a credential resolved on every tool call would otherwise be a KMS
/// round trip (tens of milliseconds, billed, and under a per-account request quota) on each call; five minutes bounds
/// how long a key disabled in KMS keeps opening rows it already opened here. Seals are never cached or retried with
/// another key: KMS unreachable is <see cref="KeyServiceUnavailableException"/>.
/// </summary>
public sealed class AwsKmsMasterKeyProvider : IMasterKeyProvider, IDisposable
{
    public const string ProviderName = "aws-kms";
    public const string KeyIdPrefix = "kms:";
    private const int KeySize = 32;
    private const int MaxCachedKeys = 10_000;

    private readonly AwsKmsSettings _settings;
    private readonly TimeProvider _clock;
    private readonly AmazonKeyManagementServiceClient _kms;
    private readonly ConcurrentDictionary<string, (DateTimeOffset Until, byte[] Key)> _unwrapped = new(StringComparer.Ordinal);

    public AwsKmsMasterKeyProvider(AwsKmsSettings settings, TimeProvider clock)
    {
        _settings = settings;
        _clock = clock;
        var config = new AmazonKeyManagementServiceConfig
        {
            // A few quick attempts: a caller waits on this, and an unreachable KMS must answer 503 soon, not in minutes.
            MaxErrorRetry = 2,
            Timeout = TimeSpan.FromSeconds(5),
            ConnectTimeout = TimeSpan.FromSeconds(3),
        };
        if (settings.ServiceUrl is { } url)
        {
            config.ServiceURL = url.ToString();
            config.AuthenticationRegion = settings.Region;
        }
        else
        {
            config.RegionEndpoint = RegionEndpoint.GetBySystemName(settings.Region);
        }
        _kms = string.IsNullOrEmpty(settings.AccessKeyId)
            ? new AmazonKeyManagementServiceClient(config)
            : new AmazonKeyManagementServiceClient(new BasicAWSCredentials(settings.AccessKeyId, settings.SecretAccessKey), config);
    }

    public string Name => ProviderName;

    public string CurrentKeyId => string.IsNullOrWhiteSpace(_settings.KeyId)
        ? throw new InvalidOperationException($"{AwsKmsSettings.Section}:KeyId is not set; AWS KMS can open rows it wrapped but wrap none.")
        : KeyIdPrefix + _settings.KeyId;

    public bool Holds(string keyId) => keyId.StartsWith(KeyIdPrefix, StringComparison.Ordinal);

    public async Task<DataKey> GenerateDataKeyAsync(DataKeyBinding binding, CancellationToken ct)
    {
        var keyId = CurrentKeyId;
        var response = await CallAsync(() => _kms.GenerateDataKeyAsync(new GenerateDataKeyRequest
        {
            KeyId = keyId[KeyIdPrefix.Length..],
            KeySpec = DataKeySpec.AES_256,
            EncryptionContext = binding.ToEncryptionContext(),
        }, ct), ct);
        var plaintext = response.Plaintext.ToArray();
        if (plaintext.Length != KeySize)
        {
            CryptographicOperations.ZeroMemory(plaintext);
            throw new KeyServiceUnavailableException($"AWS KMS answered a data key of {plaintext.Length} bytes instead of {KeySize}.");
        }
        return new DataKey(plaintext, response.CiphertextBlob.ToArray(), keyId);
    }

    public async Task<byte[]> WrapAsync(byte[] dataKey, DataKeyBinding binding, CancellationToken ct)
    {
        var keyId = CurrentKeyId;
        var response = await CallAsync(() => _kms.EncryptAsync(new EncryptRequest
        {
            KeyId = keyId[KeyIdPrefix.Length..],
            Plaintext = new MemoryStream(dataKey, writable: false),
            EncryptionContext = binding.ToEncryptionContext(),
        }, ct), ct);
        return response.CiphertextBlob.ToArray();
    }

    public async Task<byte[]> UnwrapAsync(string keyId, byte[] wrapped, DataKeyBinding binding, CancellationToken ct)
    {
        var cacheKey = CacheKey(keyId, wrapped, binding);
        var now = _clock.GetUtcNow();
        if (_unwrapped.TryGetValue(cacheKey, out var cached) && cached.Until > now) return cached.Key.ToArray();

        var response = await CallAsync(() => _kms.DecryptAsync(new DecryptRequest
        {
            KeyId = keyId[KeyIdPrefix.Length..],
            CiphertextBlob = new MemoryStream(wrapped, writable: false),
            EncryptionContext = binding.ToEncryptionContext(),
        }, ct), ct);
        var dataKey = response.Plaintext.ToArray();
        if (dataKey.Length != KeySize)
        {
            CryptographicOperations.ZeroMemory(dataKey);
            throw VaultCrypto.Integrity();
        }
        Remember(cacheKey, dataKey, now);
        return dataKey;
    }

    private void Remember(string cacheKey, byte[] dataKey, DateTimeOffset now)
    {
        if (_settings.DataKeyCacheTtl <= TimeSpan.Zero) return;
        if (_unwrapped.Count >= MaxCachedKeys)
        {
            foreach (var (key, entry) in _unwrapped)
            {
                if (entry.Until <= now && _unwrapped.TryRemove(key, out var removed)) CryptographicOperations.ZeroMemory(removed.Key);
            }
            if (_unwrapped.Count >= MaxCachedKeys) return; // full of live keys: this one is simply asked for again next time
        }
        _unwrapped[cacheKey] = (now + _settings.DataKeyCacheTtl, dataKey.ToArray());
    }

    private static string CacheKey(string keyId, byte[] wrapped, DataKeyBinding binding) =>
        Convert.ToHexString(SHA256.HashData([.. System.Text.Encoding.UTF8.GetBytes(keyId), 0, .. binding.ToBytes(), 0, .. wrapped]));

    private static async Task<T> CallAsync<T>(Func<Task<T>> call, CancellationToken ct)
    {
        try
        {
            return await call();
        }
        catch (Exception e) when (e is InvalidCiphertextException or IncorrectKeyException)
        {
            // KMS checked the blob and its encryption context and refused: altered, moved to another row, or not ours.
            throw VaultCrypto.Integrity();
        }
        catch (AmazonServiceException e) when (e.StatusCode != 0 && !string.IsNullOrEmpty(e.ErrorCode))
        {
            throw new KeyServiceUnavailableException($"AWS KMS refused the request ({e.ErrorCode}); nothing was sealed or opened.", e);
        }
        catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
        {
            throw new KeyServiceUnavailableException("AWS KMS could not be reached; nothing was sealed or opened. Try again shortly.", e);
        }
    }

    public void Dispose()
    {
        _kms.Dispose();
        foreach (var entry in _unwrapped.Values) CryptographicOperations.ZeroMemory(entry.Key);
    }
}
