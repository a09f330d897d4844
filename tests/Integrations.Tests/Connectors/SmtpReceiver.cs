using System.Collections.Concurrent;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Integrations.Tests.Support;
using MimeKit;

namespace Integrations.Tests.Connectors;

/// <summary>
/// A real SMTP server (smtp-server from npm, through tests/fixtures/smtp-server.mjs) on 127.0.0.1: its port, the PEM of
/// its self-signed certificate (localhost, 127.0.0.1), and every message it received with the envelope, the AUTH used
/// and whether the session was encrypted.
/// </summary>
public sealed class SmtpReceiver : IAsyncDisposable
{
    public sealed record Received(string From, IReadOnlyList<string> To, string? User, string? AuthMethod, bool Secure, MimeMessage Message);

    private static readonly JsonSerializerOptions SnakeCase = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    private static readonly Lazy<(string Directory, string CertificatePem)> Certificate = new(MakeCertificate);

    private FixtureProcess _process = null!;

    public int Port { get; private set; }

    public static string CertificatePem => Certificate.Value.CertificatePem;

    public ConcurrentQueue<Received> Messages { get; } = new();

    /// <param name="mode">starttls, tls or none.</param>
    public static async Task<SmtpReceiver> StartAsync(string mode, string? user = null, string? password = null)
    {
        var receiver = new SmtpReceiver();
        var arguments = new List<string> { "--mode", mode };
        if (user is not null) arguments.AddRange(["--user", user, "--pass", password!]);
        if (mode != "none")
        {
            var directory = Certificate.Value.Directory;
            arguments.AddRange(["--key", Path.Combine(directory, "key.pem"), "--cert", Path.Combine(directory, "cert.pem")]);
        }
        receiver._process = await FixtureProcess.StartAsync("smtp-server.mjs", "smtp-server", arguments, line =>
        {
            if (!line.StartsWith('{')) return;
            var seen = JsonSerializer.Deserialize<Line>(line, SnakeCase)!;
            using var raw = new MemoryStream(Convert.FromBase64String(seen.Raw));
            receiver.Messages.Enqueue(new Received(seen.From, seen.To, seen.User, seen.AuthMethod, seen.Secure, MimeMessage.Load(raw)));
        });
        receiver.Port = int.Parse(receiver._process.Address, System.Globalization.CultureInfo.InvariantCulture);
        return receiver;
    }

    /// <summary>The messages once there are <paramref name="count"/> (the server logs a message as it accepts it), waiting up to ten seconds.</summary>
    public async Task<IReadOnlyList<Received>> MessagesAsync(int count)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (Messages.Count < count && DateTime.UtcNow < deadline) await Task.Delay(20);
        await Task.Delay(50);
        var seen = Messages.ToList();
        Assert.Equal(count, seen.Count);
        return seen;
    }

    public ValueTask DisposeAsync() => _process.DisposeAsync();

    private sealed record Line(string From, List<string> To, string? User, string? AuthMethod, bool Secure, string Raw);

    private static (string, string) MakeCertificate()
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var names = new SubjectAlternativeNameBuilder();
        names.AddDnsName("localhost");
        names.AddIpAddress(IPAddress.Loopback);
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
        var directory = Directory.CreateTempSubdirectory("smtp-cert-").FullName;
        var pem = certificate.ExportCertificatePem();
        File.WriteAllText(Path.Combine(directory, "cert.pem"), pem);
        File.WriteAllText(Path.Combine(directory, "key.pem"), key.ExportPkcs8PrivateKeyPem());
        return (directory, pem);
    }
}
