using System.Text.Json;
using Integrations.Features.Credentials;
using Integrations.Features.Datasources;
using Integrations.Tests.Support;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Integrations.Tests.Datasources;

/// <summary>The service (every log line captured) and a PostgreSQL cluster that authenticates by client certificate only.</summary>
public sealed class CertificateDatasourceFixture : IAsyncLifetime
{
    public CertificateAuthCluster Cluster { get; } = new();

    public LogCapture Logs { get; } = new();

    public ServiceHost Host { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        await Cluster.InitializeAsync();
        Host = await ServiceHost.StartAsync(configure: services => services.AddLogging(b => b.AddProvider(Logs).SetMinimumLevel(LogLevel.Trace)));
    }

    public async Task DisposeAsync()
    {
        await Host.DisposeAsync();
        await Cluster.DisposeAsync();
    }
}

/// <summary>
/// client_certificate credentials for PostgreSQL datasources, against a real cluster of the class's own that requires
/// a client certificate from its CA whose CN names the role (<see cref="CertificateAuthCluster"/>): the right
/// certificate runs queries with no password; a certificate from another CA, one naming another role, and a password
/// without a certificate are refused by the server and surface as clear failures (never a 500); the key never shows.
/// </summary>
public sealed class DatasourceCertificateTests(CertificateDatasourceFixture fixture) : IClassFixture<CertificateDatasourceFixture>
{
    private static readonly TestPki Rogue = TestPki.Create("rogue-ca");

    private ServiceHost Host => fixture.Host;
    private CertificateAuthCluster Cluster => fixture.Cluster;
    private TargetDatabase Target => fixture.Cluster.Target;

    private async Task<Datasource.Response> RegisterAsync(string tenant, string name, Credential.Response credential, string tlsMode = "verify-full")
    {
        var registered = await Host.SendAsync(new RegisterDatasource.Command(name, "127.0.0.1", Target.Database, Target.Role, credential.Reference,
            Port: Target.Port, TlsMode: tlsMode), tenant);
        Assert.True(registered.IsSuccess, registered.Error?.Detail);
        return registered.Value;
    }

    private async Task<Credential.Response> StoreAsync(string tenant, string name, Dictionary<string, string> fields)
    {
        var stored = await Host.SendAsync(new StoreCredential.Command(name, "client_certificate", Fields: fields), tenant);
        Assert.True(stored.IsSuccess, stored.Error?.Detail);
        return stored.Value;
    }

    private async Task<Datasource.Response> TestAsync(string tenant, Guid id) => (await Host.SendAsync(new TestDatasource.Command(id), tenant)).Value;

    /// <summary>No line of the key's base64 in <paramref name="texts"/>, nor in the tenant's rows and audit events, nor in any log line.</summary>
    private async Task AssertKeyNowhereAsync(string tenant, Dictionary<string, string> fields, params string?[] texts)
    {
        var keyLines = fields["private_key"].Split('\n').Where(l => l.Length > 20 && !l.StartsWith("-----", StringComparison.Ordinal)).ToList();
        var stored = await OwnerSql.ScalarAsync<string>(Host.ConnectionString, """
            SELECT coalesce((SELECT string_agg(status_message, ' ') FROM datasources WHERE tenant_id = @tenant), '')
                || coalesce((SELECT string_agg(details::text, ' ') FROM audit_events WHERE tenant_id = @tenant), '')
            """, new { tenant });
        foreach (var line in keyLines)
        {
            foreach (var text in texts) Assert.DoesNotContain(line, text ?? string.Empty);
            Assert.DoesNotContain(line, stored);
            Assert.DoesNotContain(fixture.Logs.Lines, l => l.Contains(line, StringComparison.Ordinal));
        }
    }

    [Fact]
    public async Task A_query_runs_on_a_datasource_that_authenticates_the_client_certificate_and_no_password_is_sent()
    {
        var tenant = TestEnvironment.NewTenant();
        var fields = Cluster.Pki.CredentialFields(Cluster.Pki.Issue(Target.Role));
        var datasource = await RegisterAsync(tenant, "by-certificate", await StoreAsync(tenant, "db-cert", fields));

        var tested = await TestAsync(tenant, datasource.Id);
        Assert.True(tested.Status == "active", tested.StatusMessage);
        Assert.Contains($"Connected as '{Target.Role}'", tested.StatusMessage);

        var defined = await Host.SendAsync(new DefineQuery.Command(datasource.Id, "notes", "SELECT id, note FROM t ORDER BY id"), tenant);
        Assert.True(defined.IsSuccess, defined.Error?.Detail);
        var run = await Host.SendAsync(new RunQuery.Command(datasource.Id, "notes"), tenant);
        Assert.True(run.IsSuccess, run.Error?.Detail);
        Assert.Equal(["one", "two", "three"], run.Value.Rows.Select(r => (string)r[1]!));

        // The server says how it authenticated the session: by the certificate, as the role its CN names.
        Assert.Contains($"connection authenticated: identity=\"CN={Target.Role}\" method=cert", Cluster.Log);
        await AssertKeyNowhereAsync(tenant, fields, tested.StatusMessage, JsonSerializer.Serialize(run.Value), JsonSerializer.Serialize(datasource));
    }

    [Fact]
    public async Task A_certificate_from_another_CA_is_refused_by_the_server_and_is_a_clear_failure_not_a_500()
    {
        var tenant = TestEnvironment.NewTenant();
        var rogue = Rogue.CredentialFields(Rogue.Issue(Target.Role));
        rogue["ca_certificate"] = Cluster.Pki.AuthorityPem;
        var datasource = await RegisterAsync(tenant, "rogue", await StoreAsync(tenant, "rogue-cert", rogue));

        var tested = await TestAsync(tenant, datasource.Id);
        Assert.Equal("failing", tested.Status);
        Assert.True(tested.StatusMessage!.Contains("refused the client certificate", StringComparison.Ordinal), tested.StatusMessage);

        var define = await Host.SendAsync(new DefineQuery.Command(datasource.Id, "q", "SELECT 1 AS one"), tenant);
        Assert.Equal(("upstream_error", 502), (define.Error?.Code, define.Error?.Status));
        Assert.Contains("refused the client certificate", define.Error!.Detail);
        await AssertKeyNowhereAsync(tenant, rogue, tested.StatusMessage, define.Error.Detail);
    }

    [Fact]
    public async Task A_certificate_naming_another_role_is_refused_by_the_server()
    {
        var tenant = TestEnvironment.NewTenant();
        var fields = Cluster.Pki.CredentialFields(Cluster.Pki.Issue("someone_else"));
        var datasource = await RegisterAsync(tenant, "other-cn", await StoreAsync(tenant, "other-cn", fields));

        var tested = await TestAsync(tenant, datasource.Id);

        Assert.Equal("failing", tested.Status);
        Assert.Contains($"Authentication failed for user '{Target.Role}' (28000)", tested.StatusMessage);
        Assert.Contains("certificate authentication failed", tested.StatusMessage);
    }

    [Fact]
    public async Task Without_a_certificate_the_right_password_is_refused_by_the_server_and_without_TLS_a_certificate_is_not_sent()
    {
        var tenant = TestEnvironment.NewTenant();
        var password = await Host.SendAsync(new StoreCredential.Command("db-password", "basic_auth", Username: Target.Role, Password: Target.Password), tenant);
        var byPassword = await RegisterAsync(tenant, "by-password", password.Value, tlsMode: "require");

        var tested = await TestAsync(tenant, byPassword.Id);
        Assert.Equal("failing", tested.Status);
        Assert.Contains("requires a valid client certificate", tested.StatusMessage);
        Assert.DoesNotContain(Target.Password, tested.StatusMessage);

        var fields = Cluster.Pki.CredentialFields(Cluster.Pki.Issue(Target.Role));
        var plain = await RegisterAsync(tenant, "no-tls", await StoreAsync(tenant, "no-tls", fields), tlsMode: "disable");
        var refused = await TestAsync(tenant, plain.Id);
        Assert.Equal("failing", refused.Status);
        Assert.Contains("tls_mode must not be 'disable'", refused.StatusMessage);
    }

    [Fact]
    public async Task Without_the_CA_of_the_server_the_client_does_not_trust_it_under_verify_full()
    {
        var tenant = TestEnvironment.NewTenant();
        var fields = Cluster.Pki.CredentialFields(Cluster.Pki.Issue(Target.Role));
        fields.Remove("ca_certificate");
        var datasource = await RegisterAsync(tenant, "no-ca", await StoreAsync(tenant, "no-ca", fields));

        var tested = await TestAsync(tenant, datasource.Id);

        Assert.Equal("failing", tested.Status);
        Assert.True(tested.StatusMessage!.Contains("the server's certificate is not trusted", StringComparison.Ordinal), tested.StatusMessage);
    }
}
