using System.Security.Cryptography.X509Certificates;
using Npgsql;

namespace Integrations.Tests.Support;

/// <summary>
/// A <see cref="PrivateCluster"/> that authenticates every role but its superuser by TLS client certificate alone:
/// <c>ssl = on</c> with a server certificate for 127.0.0.1 from <see cref="Pki"/>, <c>ssl_ca_file</c> that CA, and
/// <c>hostssl all all 127.0.0.1/32 cert</c> (the certificate must chain to the CA and its CN name the role; no
/// password is asked, and a connection without TLS or without a certificate is refused). The superuser signs in by
/// password, for set-up. <see cref="Target"/> is a seeded database whose reader role a certificate with CN =
/// <see cref="TargetDatabase.Role"/> may use.
/// </summary>
public sealed class CertificateAuthCluster : IAsyncLifetime
{
    private PrivateCluster _cluster = null!;

    public TestPki Pki { get; } = TestPki.Create("datasource-ca");

    public TargetDatabase Target { get; private set; } = null!;

    public string Log => _cluster.Log;

    public async Task InitializeAsync()
    {
        var server = Pki.Issue("127.0.0.1", forServer: true);
        _cluster = await PrivateCluster.StartAsync(async cluster =>
        {
            await cluster.WriteAsync("server.crt", server.ExportCertificatePem());
            await cluster.WriteAsync("server.key", server.GetECDsaPrivateKey()!.ExportPkcs8PrivateKeyPem());
            await cluster.WriteAsync("ca.crt", Pki.AuthorityPem);
            await cluster.WriteAsync("pg_hba.conf", """
                local   all  all                 trust
                host    all  admin  127.0.0.1/32 scram-sha-256
                hostssl all  all    127.0.0.1/32 cert

                """);
        }, "-c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key -c ssl_ca_file=ca.crt -c log_connections=on");
        Target = await TargetDatabase.CreateAsync(_cluster.AdminConnectionString);
    }

    public async Task DisposeAsync()
    {
        NpgsqlConnection.ClearAllPools();
        await _cluster.DisposeAsync();
    }
}
