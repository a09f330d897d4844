using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Integrations.Common;

namespace Integrations.Infrastructure.Vault;

/// <summary>
/// A <c>client_certificate</c> credential as a TLS client identity: <c>fields</c> <c>certificate</c> (PEM, the leaf
/// first, intermediates after it), <c>private_key</c> (PEM: PKCS#8, RSA or EC; or an encrypted PKCS#8 key,
/// <c>-----BEGIN ENCRYPTED PRIVATE KEY-----</c>, with <c>private_key_password</c>) and, optionally,
/// <c>ca_certificate</c> (PEM: the CAs the server's certificate must chain to, for servers under a private PKI;
/// without it the system's roots decide). Checked when stored (parseable, key decrypts and matches, valid now, usable
/// for client authentication) and again when used. An encrypted key is decrypted once, at store (<see cref="AsStored"/>):
/// the vault seals the decrypted key, which is as protected there as the password would be, and the password is not
/// kept, so it is needed at no later moment. A class with a redacted <see cref="ToString"/>: the key never prints.
/// </summary>
public sealed class ClientCertificate : IDisposable
{
    public const string CertificateField = "certificate";
    public const string PrivateKeyField = "private_key";
    public const string CaCertificateField = "ca_certificate";
    public const string PrivateKeyPasswordField = "private_key_password";

    private const string EncryptedKeyLabel = "-----BEGIN ENCRYPTED PRIVATE KEY-----";

    private const string ClientAuthentication = "1.3.6.1.5.5.7.3.2";
    private const string RsaOid = "1.2.840.113549.1.1.1";
    private const string EcOid = "1.2.840.10045.2.1";

    /// <summary>The certificates of a <c>ca_certificate</c> field (PEM), to trust as the only roots; null when it holds none.</summary>
    public static X509Certificate2Collection? TrustedRootsFrom(string pem)
    {
        var roots = new X509Certificate2Collection();
        try
        {
            roots.ImportFromPem(pem);
        }
        catch (CryptographicException)
        {
            return null;
        }
        return roots.Count == 0 ? null : roots;
    }

    private ClientCertificate(X509Certificate2 certificate, X509Certificate2Collection intermediates, X509Certificate2Collection? trustedRoots, string fingerprint)
    {
        Certificate = certificate;
        Intermediates = intermediates;
        TrustedRoots = trustedRoots;
        Fingerprint = fingerprint;
    }

    public X509Certificate2 Certificate { get; }

    public X509Certificate2Collection Intermediates { get; }

    public X509Certificate2Collection? TrustedRoots { get; }

    /// <summary>SHA-256 over the credential's fields: the same identity shares connections, a rotated one does not.</summary>
    public string Fingerprint { get; }

    public DateTimeOffset NotAfter => Certificate.NotAfter.ToUniversalTime();

    /// <summary>The identity in <paramref name="fields"/>, or a refusal that says what is wrong (never a value).</summary>
    public static Result<ClientCertificate> From(IReadOnlyDictionary<string, string>? fields, DateTimeOffset now)
    {
        static Error Refuse(string detail) => Error.Validation("fields", detail);
        if (fields is null || !fields.TryGetValue(CertificateField, out var certificatePem) || !fields.TryGetValue(PrivateKeyField, out var keyPem)
            || string.IsNullOrWhiteSpace(certificatePem) || string.IsNullOrWhiteSpace(keyPem))
        {
            return Refuse($"A client_certificate credential needs 'fields' '{CertificateField}' and '{PrivateKeyField}' (PEM), and may have '{CaCertificateField}' and '{PrivateKeyPasswordField}'.");
        }
        var extra = fields.Keys.Except([CertificateField, PrivateKeyField, CaCertificateField, PrivateKeyPasswordField]).ToList();
        if (extra.Count > 0)
        {
            return Refuse($"A client_certificate credential takes only '{CertificateField}', '{PrivateKeyField}', '{CaCertificateField}' and '{PrivateKeyPasswordField}', not '{string.Join("', '", extra)}'.");
        }
        var encrypted = keyPem.Contains(EncryptedKeyLabel, StringComparison.Ordinal);
        var keyPassword = fields.GetValueOrDefault(PrivateKeyPasswordField);
        if (encrypted && string.IsNullOrEmpty(keyPassword)) return Refuse($"'{PrivateKeyField}' is encrypted: give its password in '{PrivateKeyPasswordField}'.");
        if (!encrypted && keyPassword is not null) return Refuse($"'{PrivateKeyPasswordField}' is given but '{PrivateKeyField}' is not an encrypted PKCS#8 key ({EncryptedKeyLabel}).");

        var chain = new X509Certificate2Collection();
        try
        {
            chain.ImportFromPem(certificatePem);
        }
        catch (CryptographicException)
        {
            return Refuse($"'{CertificateField}' is not a PEM certificate (-----BEGIN CERTIFICATE-----).");
        }
        if (chain.Count == 0) return Refuse($"'{CertificateField}' is not a PEM certificate (-----BEGIN CERTIFICATE-----).");
        var leaf = chain[0];
        chain.RemoveAt(0);

        X509Certificate2Collection? roots = null;
        if (fields.TryGetValue(CaCertificateField, out var caPem) && (roots = ClientCertificate.TrustedRootsFrom(caPem)) is null)
        {
            return Refuse($"'{CaCertificateField}' is not a PEM certificate (-----BEGIN CERTIFICATE-----).");
        }

        if (now < leaf.NotBefore.ToUniversalTime()) return Refuse($"The certificate is not valid before {leaf.NotBefore.ToUniversalTime():u}.");
        if (now >= leaf.NotAfter.ToUniversalTime()) return Refuse($"The certificate expired on {leaf.NotAfter.ToUniversalTime():u}; store a current one.");
        var usages = leaf.Extensions.OfType<X509EnhancedKeyUsageExtension>().FirstOrDefault();
        if (usages is not null && !usages.EnhancedKeyUsages.Cast<System.Security.Cryptography.Oid>().Any(o => o.Value == ClientAuthentication))
        {
            return Refuse("The certificate's extended key usage does not include client authentication (1.3.6.1.5.5.7.3.2).");
        }

        X509Certificate2 withKey;
        try
        {
            withKey = leaf.PublicKey.Oid.Value switch
            {
                RsaOid => WithKey(leaf, RSA.Create(), keyPem, keyPassword, (c, k) => c.CopyWithPrivateKey(k)),
                EcOid => WithKey(leaf, ECDsa.Create(), keyPem, keyPassword, (c, k) => c.CopyWithPrivateKey(k)),
                _ => throw new NotSupportedException(),
            };
        }
        catch (NotSupportedException)
        {
            return Refuse("The certificate's key is neither RSA nor EC.");
        }
        catch (FormatException) when (encrypted)
        {
            return Refuse($"'{PrivateKeyPasswordField}' does not decrypt '{PrivateKeyField}' (a wrong password, or not a PKCS#8 key of the certificate's algorithm).");
        }
        catch (FormatException)
        {
            return Refuse($"'{PrivateKeyField}' is not a PEM private key of the certificate's algorithm (PKCS#8, RSA or EC; encrypted only as PKCS#8 with '{PrivateKeyPasswordField}').");
        }
        catch (Exception e) when (e is ArgumentException or CryptographicException)
        {
            return Refuse($"'{PrivateKeyField}' does not belong to the certificate (its public key differs).");
        }
        return new ClientCertificate(withKey, chain, roots, FingerprintOf(fields));
    }

    private const int MaxLoaded = 1_000;
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, ClientCertificate> Loaded = new(StringComparer.Ordinal);

    /// <summary>
    /// The identity of a resolved client_certificate credential, parsed once per version and kept (a hot path would
    /// otherwise import the key on every call), and checked for expiry on every use.
    /// </summary>
    public static Result<ClientCertificate> Of(ResolvedCredential credential, DateTimeOffset now)
    {
        var key = FingerprintOf(credential.Fields);
        if (!Loaded.TryGetValue(key, out var loaded))
        {
            var parsed = From(credential.Fields, now);
            if (!parsed.IsSuccess) return parsed;
            if (Loaded.Count >= MaxLoaded) Loaded.Clear(); // not disposed: a connection may still be using one
            loaded = Loaded.GetOrAdd(key, parsed.Value);
        }
        return now < loaded.NotAfter ? loaded : Error.Validation("credential_ref",
            $"The client certificate expired on {loaded.NotAfter:u}; rotate the credential with a current one.");
    }

    private static string FingerprintOf(IReadOnlyDictionary<string, string>? fields) => Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(
        $"{fields?.GetValueOrDefault(CertificateField)}\0{fields?.GetValueOrDefault(PrivateKeyField)}\0{fields?.GetValueOrDefault(CaCertificateField)}")));

    /// <summary>
    /// The fields as the vault keeps them: with <c>private_key_password</c>, the key decrypted (unencrypted PKCS#8 PEM)
    /// and the password dropped; otherwise unchanged. Only for fields <see cref="From"/> accepted.
    /// </summary>
    public static IReadOnlyDictionary<string, string> AsStored(IReadOnlyDictionary<string, string> fields)
    {
        if (!fields.ContainsKey(PrivateKeyPasswordField)) return fields;
        var parsed = From(fields, DateTimeOffset.UtcNow);
        if (!parsed.IsSuccess) throw new InvalidOperationException("AsStored takes only fields From accepted.");
        using var identity = parsed.Value;
        var certificate = identity.Certificate;
        var decrypted = (AsymmetricAlgorithm?)certificate.GetRSAPrivateKey() ?? certificate.GetECDsaPrivateKey()
            ?? throw new InvalidOperationException("A parsed client certificate holds an RSA or EC key.");
        using (decrypted)
        {
            var stored = fields.Where(f => f.Key != PrivateKeyPasswordField).ToDictionary();
            stored[PrivateKeyField] = decrypted.ExportPkcs8PrivateKeyPem();
            return stored;
        }
    }

    private static X509Certificate2 WithKey<TKey>(X509Certificate2 leaf, TKey key, string pem, string? password, Func<X509Certificate2, TKey, X509Certificate2> attach)
        where TKey : AsymmetricAlgorithm
    {
        using (key)
        {
            try
            {
                if (password is null) key.ImportFromPem(pem);
                else key.ImportFromEncryptedPem(pem, password);
            }
            catch (Exception e) when (e is ArgumentException or CryptographicException)
            {
                throw new FormatException("unparseable key", e);
            }
            return attach(leaf, key);
        }
    }

    /// <summary>The TLS options that present this identity and, with <see cref="TrustedRoots"/>, check the server against them.</summary>
    public SslClientAuthenticationOptions TlsOptions() => new()
    {
        ClientCertificateContext = SslStreamCertificateContext.Create(Certificate, Intermediates, offline: true),
        RemoteCertificateValidationCallback = TrustedRoots is null ? null : ChainsTo(TrustedRoots),
    };

    /// <summary>A server certificate check that trusts <paramref name="roots"/> alone (a private PKI), the host name still checked.</summary>
    public static RemoteCertificateValidationCallback ChainsTo(X509Certificate2Collection roots) =>
        (_, certificate, presented, errors) => ServerChainsTo(roots, certificate, presented, errors);

    private static bool ServerChainsTo(X509Certificate2Collection roots, X509Certificate? certificate, X509Chain? presented, SslPolicyErrors errors)
    {
        if (certificate is null || (errors & (SslPolicyErrors.RemoteCertificateNotAvailable | SslPolicyErrors.RemoteCertificateNameMismatch)) != 0) return false;
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(roots);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        if (presented is not null)
        {
            foreach (var element in presented.ChainElements) chain.ChainPolicy.ExtraStore.Add(element.Certificate);
        }
        return chain.Build(certificate as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(certificate.GetRawCertData()));
    }

    /// <summary>
    /// What a failed connection made with a client certificate means, or null when it failed for another reason. A
    /// handshake that fails on our side is the server's certificate; under TLS 1.3 the server checks ours only after
    /// our side of the handshake is done, and its refusal reaches us as a connection closed before any answer.
    /// </summary>
    public static string? RefusalDetail(Exception exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            if (e is System.Security.Authentication.AuthenticationException or HttpRequestException { HttpRequestError: HttpRequestError.SecureConnectionError })
            {
                return "the TLS handshake failed: the server's certificate is not trusted (check ca_certificate), or it refused the client certificate";
            }
        }
        for (var e = exception; e is not null; e = e.InnerException)
        {
            if (e is HttpRequestException { HttpRequestError: HttpRequestError.ResponseEnded } or HttpIOException { HttpRequestError: HttpRequestError.ResponseEnded })
            {
                return "the server closed the connection without answering, which is how a TLS 1.3 server refuses a client certificate it does not accept";
            }
        }
        return null;
    }

    public override string ToString() => $"ClientCertificate({Certificate.Subject}, key redacted)";

    public void Dispose() => Certificate.Dispose();
}
