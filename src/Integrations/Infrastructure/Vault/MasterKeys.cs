using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;

namespace Integrations.Infrastructure.Vault;

/// <summary>A master key and its id: the first 8 hex digits of a SHA-256 over the key, stored next to what it wraps.</summary>
public sealed class MasterKey
{
    private readonly byte[] _key;

    public MasterKey(byte[] key)
    {
        if (key.Length != 32) throw new ArgumentException("A master key is 32 bytes.", nameof(key));
        _key = key;
        Id = IdOf(key);
    }

    public string Id { get; }

    internal ReadOnlySpan<byte> Bytes => _key;

    public static string IdOf(ReadOnlySpan<byte> key) =>
        Convert.ToHexStringLower(SHA256.HashData([.. "integrations.vault.master-key-id\0"u8, .. key]))[..8];

    public override string ToString() => $"MasterKey({Id})";
}

/// <summary>
/// The master keys from configuration: <c>Integrations:Vault:MasterKey</c> is the current key (new data keys are
/// wrapped under it); <c>Integrations:Vault:PreviousKeys:&lt;any name&gt;</c> are older keys that still unwrap rows
/// carrying their id until <c>rotate-master-key</c> has re-wrapped them. Values are base64 of 32 bytes.
/// </summary>
public sealed class MasterKeys
{
    public const string Section = "Integrations:Vault";
    public const string CurrentKey = Section + ":MasterKey";
    public const string PreviousKeysSection = Section + ":PreviousKeys";
    public const string DevelopmentKeyFileKey = Section + ":DevelopmentKeyFile";

    /// <summary>Which <see cref="IMasterKeyProvider"/> wraps new data keys: <c>local</c> (default) or <c>aws-kms</c>.</summary>
    public const string ProviderKey = Section + ":Provider";

    private readonly Dictionary<string, MasterKey> _byId;

    public MasterKeys(MasterKey current, IEnumerable<MasterKey>? previous = null)
    {
        Current = current;
        _byId = new Dictionary<string, MasterKey>(StringComparer.Ordinal) { [current.Id] = current };
        foreach (var key in previous ?? []) _byId.TryAdd(key.Id, key);
    }

    public MasterKey Current { get; }

    public IReadOnlyCollection<string> KeyIds => _byId.Keys;

    public bool TryGet(string keyId, out MasterKey key) => _byId.TryGetValue(keyId, out key!);

    /// <summary>
    /// Reads the keys; a malformed key always stops start-up, a missing one does too except in Development, where a key
    /// is generated once into an ignored file (<c>Integrations:Vault:DevelopmentKeyFile</c>, default <c>.data/vault-master.key</c>).
    /// Messages never contain key material.
    /// </summary>
    public static MasterKeys FromConfiguration(IConfiguration configuration, IHostEnvironment? environment)
    {
        var configured = configuration[CurrentKey];
        MasterKey current;
        if (!string.IsNullOrWhiteSpace(configured))
        {
            current = Parse(configured, CurrentKey);
        }
        else if (environment?.IsDevelopment() == true)
        {
            var path = configuration[DevelopmentKeyFileKey] ?? Path.Combine(environment.ContentRootPath, ".data", "vault-master.key");
            current = Parse(LoadOrCreateDevelopmentKey(path), path);
        }
        else
        {
            throw new InvalidOperationException(
                $"{CurrentKey} is not set. Set Integrations__Vault__MasterKey to base64 of 32 random bytes " +
                "(for example: openssl rand -base64 32) and keep it in your secret store; without it the vault cannot " +
                "decrypt any credential. ./build.sh run generates a development key under .data/.");
        }

        var previous = configuration.GetSection(PreviousKeysSection).GetChildren()
            .Where(c => !string.IsNullOrWhiteSpace(c.Value))
            .Select(c => Parse(c.Value!, $"{PreviousKeysSection}:{c.Key}"))
            .ToList();
        return new MasterKeys(current, previous);
    }

    public static MasterKey Parse(string base64, string settingName)
    {
        var buffer = new byte[64];
        if (!Convert.TryFromBase64String(base64.Trim(), buffer, out var written) || written != 32)
        {
            throw new InvalidOperationException(
                $"{settingName} is malformed: it must be base64 of exactly 32 bytes (for example: openssl rand -base64 32).");
        }
        return new MasterKey(buffer[..32]);
    }

    public static string Generate() => Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));

    private static string LoadOrCreateDevelopmentKey(string path)
    {
        if (File.Exists(path)) return File.ReadAllText(path, Encoding.ASCII).Trim();
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        var key = Generate();
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        try
        {
            using var writer = new StreamWriter(path, Encoding.ASCII, options);
            writer.Write(key);
        }
        catch (IOException) when (File.Exists(path))
        {
            return File.ReadAllText(path, Encoding.ASCII).Trim(); // another process created it first
        }
        return key;
    }
}
