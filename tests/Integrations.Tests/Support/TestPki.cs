using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Server.Kestrel.Https;

namespace Integrations.Tests.Support;

/// <summary>
/// A throwaway certificate authority for mutual-TLS tests (EC P-256, made with <see cref="CertificateRequest"/>): it
/// issues a server certificate for 127.0.0.1 and client certificates, and configures a Kestrel listener that
/// requires a client certificate chaining to it.
/// </summary>
public sealed class TestPki
{
    private static readonly Oid ClientAuth = new("1.3.6.1.5.5.7.3.2");
    private static readonly Oid ServerAuth = new("1.3.6.1.5.5.7.3.1");

    private TestPki(X509Certificate2 authority) => Authority = authority;

    public X509Certificate2 Authority { get; }

    public string AuthorityPem => Authority.ExportCertificatePem();

    public static TestPki Create(string name)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        return new TestPki(request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-60), DateTimeOffset.UtcNow.AddYears(1)));
    }

    /// <summary>A certificate this CA signs, with its key; <paramref name="usage"/> is its extended key usage (client authentication by default).</summary>
    public X509Certificate2 Issue(string subject, DateTimeOffset? notBefore = null, DateTimeOffset? notAfter = null, Oid? usage = null, bool forServer = false)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={subject}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([usage ?? (forServer ? ServerAuth : ClientAuth)], false));
        if (forServer)
        {
            var names = new SubjectAlternativeNameBuilder();
            names.AddIpAddress(IPAddress.Loopback);
            names.AddDnsName("localhost");
            request.CertificateExtensions.Add(names.Build());
        }
        var serial = RandomNumberGenerator.GetBytes(12);
        using var issued = request.Create(Authority, notBefore ?? DateTimeOffset.UtcNow.AddMinutes(-5), notAfter ?? DateTimeOffset.UtcNow.AddDays(30), serial);
        return issued.CopyWithPrivateKey(key);
    }

    public static Oid ServerAuthentication => ServerAuth;

    /// <summary>The <c>fields</c> of a client_certificate credential for <paramref name="certificate"/>, trusting this CA for the server.</summary>
    public Dictionary<string, string> CredentialFields(X509Certificate2 certificate) => new()
    {
        ["certificate"] = certificate.ExportCertificatePem(),
        ["private_key"] = certificate.GetECDsaPrivateKey()!.ExportPkcs8PrivateKeyPem(),
        ["ca_certificate"] = AuthorityPem,
    };

    /// <summary>HTTPS with a server certificate for 127.0.0.1 from this CA (a client trusts it only with this CA).</summary>
    public Action<HttpsConnectionAdapterOptions> ServeHttps()
    {
        // Kestrel needs a key it can use for the server side: re-import the ephemeral one as PKCS#12.
        var server = X509CertificateLoader.LoadPkcs12(Issue("127.0.0.1", forServer: true).Export(X509ContentType.Pkcs12), null);
        return https => https.ServerCertificate = server;
    }

    /// <summary>HTTPS with a server certificate from this CA, refusing any connection without a client certificate it issued.</summary>
    public Action<HttpsConnectionAdapterOptions> RequireClientCertificates()
    {
        var serve = ServeHttps();
        return https =>
        {
            serve(https);
            https.ClientCertificateMode = ClientCertificateMode.RequireCertificate;
            https.ClientCertificateValidation = (certificate, _, _) =>
            {
                using var chain = new X509Chain();
                chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
                chain.ChainPolicy.CustomTrustStore.Add(Authority);
                chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
                return chain.Build(certificate);
            };
        };
    }
}
