using System.Text.Json;
using Integrations.Common;
using Integrations.Features.Credentials;
using Integrations.Features.Integrations;
using Integrations.Tests.Support;

namespace Integrations.Tests.Credentials;

/// <summary>
/// A tenant's own HashiCorp Vault: its connection stored as a <c>hashicorp_vault</c> credential and named in
/// <c>hcvault://&lt;connection&gt;@mount/path#field</c> references. Two local Vaults (<see cref="FakeHashiCorpVault"/>):
/// the deployment's and the tenant's, holding different values at the same path.
/// </summary>
public sealed class TenantHashiCorpVaultTests : IAsyncLifetime
{
    private const string SystemToken = "hvs.system-token";
    private const string Path = "apps/openai";

    private FakeHashiCorpVault _system = null!;
    private FakeHashiCorpVault _tenantVault = null!;
    private ServiceHost _host = null!;

    public async Task InitializeAsync()
    {
        _system = await FakeHashiCorpVault.StartAsync();
        _system.Tokens[SystemToken] = true;
        _system.Secrets[$"secret/{Path}"] = new() { ["api_key"] = "sk-from-the-deployment-vault" };
        _tenantVault = await FakeHashiCorpVault.StartAsync();
        _host = await VaultTestKit.StartHostAsync(new Dictionary<string, string?>
        {
            ["Integrations:Vault:HashiCorp:Address"] = _system.Address,
            ["Integrations:Vault:HashiCorp:Token"] = SystemToken,
            ["Integrations:Vault:HashiCorp:CacheTtl"] = "00:00:00",
        });
    }

    public async Task DisposeAsync()
    {
        await _host.DisposeAsync();
        await _system.DisposeAsync();
        await _tenantVault.DisposeAsync();
    }

    private static Dictionary<string, string> TokenConnection(string address, string token) =>
        new() { ["address"] = address, ["token"] = token, ["namespace"] = "team-b" };

    private async Task<Result<Credential.Response>> ConnectAsync(string tenant, Dictionary<string, string> fields, string name = "team-vault") =>
        await _host.SendAsync(new StoreCredential.Command(name, "hashicorp_vault", Fields: fields), tenant);

    /// <summary>A tenant whose Vault holds its own value at <see cref="Path"/>; answers the tenant, its token and that value.</summary>
    private async Task<(string Tenant, string Token, string Secret)> TenantWithVaultAsync()
    {
        var tenant = TestEnvironment.NewTenant();
        var token = $"hvs.tenant-{Guid.NewGuid():N}";
        var secret = $"sk-tenant-{Guid.NewGuid():N}";
        _tenantVault.Tokens[token] = true;
        _tenantVault.Secrets[$"kv/{tenant}/{Path}"] = new() { ["api_key"] = secret };
        Assert.True((await ConnectAsync(tenant, TokenConnection(_tenantVault.Address, token))).IsSuccess);
        return (tenant, token, secret);
    }

    [Fact]
    public async Task A_tenant_reference_reads_from_the_tenants_own_vault_with_its_token_and_namespace_not_the_deployments()
    {
        var (tenant, token, secret) = await TenantWithVaultAsync();
        var reference = $"hcvault://team-vault@kv/{tenant}/{Path}#api_key";
        var integration = await _host.IntegrationAsync(tenant, reference);
        var systemReadsBefore = _system.Requests.Count;

        Assert.Equal(secret, (await _host.RevealAsync(tenant, integration.Id)).Value);

        var read = Assert.Single(_tenantVault.Requests, r => r.Path == $"/v1/kv/data/{tenant}/{Path}");
        Assert.Equal((token, "team-b"), (read.Headers["x-vault-token"], read.Headers["x-vault-namespace"]));
        Assert.Equal(systemReadsBefore, _system.Requests.Count);
        Assert.Equal([("allowed", "hashicorp_vault", reference)], await VaultTestKit.AccessLogAsync(_host.ConnectionString, tenant));
        Assert.Equal(1, await OwnerSql.AuditCountAsync(_host.ConnectionString, tenant, "credential.accessed"));
        Assert.False(await VaultTestKit.DatabaseContainsAsync(_host.ConnectionString, tenant, token));
        Assert.False(await VaultTestKit.DatabaseContainsAsync(_host.ConnectionString, tenant, secret));

        // The deployment's Vault still serves the system's references, with its own token.
        var systemCaller = new Caller(tenant, "system:test", new HashSet<string> { Scopes.Read }, IsSystem: true);
        var system = await _host.SendAsync(new RevealForTest(Infrastructure.Vault.CredentialAccessor.System, $"hcvault://secret/{Path}#api_key"), systemCaller);
        Assert.Equal("sk-from-the-deployment-vault", system.Value);
        Assert.All(_system.Requests, r => Assert.Equal(SystemToken, r.Headers["x-vault-token"]));
    }

    [Fact]
    public async Task AppRole_logs_in_at_the_tenants_vault_once_and_the_token_is_kept_per_connection()
    {
        var tenant = TestEnvironment.NewTenant();
        _tenantVault.Secrets[$"kv/{tenant}/{Path}"] = new() { ["api_key"] = "sk-approle" };
        var stored = await ConnectAsync(tenant, new() { ["address"] = _tenantVault.Address, ["role_id"] = FakeHashiCorpVault.RoleId, ["secret_id"] = FakeHashiCorpVault.SecretId });
        Assert.True(stored.IsSuccess, stored.Error?.Detail);
        var integration = await _host.IntegrationAsync(tenant, $"hcvault://team-vault@kv/{tenant}/{Path}#api_key");
        var loginsBefore = _tenantVault.Logins;

        var reads = await Task.WhenAll(Enumerable.Range(0, 6).Select(_ => _host.RevealAsync(tenant, integration.Id)));

        Assert.All(reads, r => Assert.Equal("sk-approle", r.Value));
        Assert.Equal(1, _tenantVault.Logins - loginsBefore);
        var login = _tenantVault.Requests.Last(r => r.Path == "/v1/auth/approle/login");
        Assert.Equal(FakeHashiCorpVault.RoleId, JsonDocument.Parse(login.Body).RootElement.GetProperty("role_id").GetString());
        Assert.Equal(0, _system.Logins);
    }

    [Fact]
    public async Task Another_tenant_can_never_use_a_tenants_connection()
    {
        var (victim, _, victimSecret) = await TenantWithVaultAsync();
        var victimReference = $"hcvault://team-vault@kv/{victim}/{Path}#api_key";
        var attacker = TestEnvironment.NewTenant();

        // Without a connection of its own by that name, attaching the victim's reference is refused.
        var attach = await _host.SendAsync(new CreateIntegration.Command("steal", "openai", CredentialRef: victimReference), attacker);
        Assert.Equal("credential_not_found", attach.Error?.Code);
        Assert.Contains("no HashiCorp Vault connection named 'team-vault'", attach.Error!.Detail);

        // Nor can it be resolved through an object of its own.
        var own = await _host.IntegrationAsync(attacker, null);
        Assert.Equal("credential_denied", (await _host.RevealAsync(attacker, own.Id, victimReference)).Error?.Code);

        // With a connection of its own named alike, the same reference reads the attacker's Vault, never the victim's.
        var attackerToken = $"hvs.attacker-{Guid.NewGuid():N}";
        _system.Tokens[attackerToken] = true;
        Assert.True((await ConnectAsync(attacker, TokenConnection(_system.Address, attackerToken))).IsSuccess);
        var alike = await _host.IntegrationAsync(attacker, victimReference, "alike");
        var tenantReadsBefore = _tenantVault.Requests.Count;
        var resolved = await _host.RevealAsync(attacker, alike.Id);
        Assert.Equal("credential_not_found", resolved.Error?.Code);
        Assert.Equal(tenantReadsBefore, _tenantVault.Requests.Count);
        Assert.Contains(_system.Requests, r => r.Path == $"/v1/kv/data/{victim}/{Path}" && r.Headers["x-vault-token"] == attackerToken);
        Assert.False(await VaultTestKit.DatabaseContainsAsync(_host.ConnectionString, attacker, victimSecret));
        Assert.Contains(("denied", "no_grant", victimReference), await VaultTestKit.AccessLogAsync(_host.ConnectionString, attacker));
    }

    [Fact]
    public async Task A_vault_address_the_egress_guard_refuses_is_never_called_and_the_refusal_is_logged()
    {
        var tenant = TestEnvironment.NewTenant();
        foreach (var (name, address) in new[] { ("metadata", "http://169.254.169.254:8200"), ("private", "https://10.20.30.40:8200") })
        {
            Assert.True((await ConnectAsync(tenant, TokenConnection(address, "hvs.whatever"), name)).IsSuccess);
            var reference = $"hcvault://{name}@kv/{Path}#api_key";
            var integration = await _host.IntegrationAsync(tenant, reference, name);

            var resolved = await _host.RevealAsync(tenant, integration.Id);

            Assert.Equal("ssrf_blocked", resolved.Error?.Code);
            Assert.Contains($"HashiCorp Vault connection '{name}' is refused by the egress guard", resolved.Error!.Detail);
            Assert.DoesNotContain("hvs.whatever", resolved.Error.Detail);
            Assert.Contains(("denied", "host_not_allowed", reference), await VaultTestKit.AccessLogAsync(_host.ConnectionString, tenant));
        }
    }

    [Fact]
    public async Task A_connection_is_checked_when_stored_and_is_never_sent_anywhere_itself()
    {
        var tenant = TestEnvironment.NewTenant();
        var cases = new (string Why, Dictionary<string, string> Fields, string Expected)[]
        {
            ("no address", new() { ["token"] = "hvs.secret-token" }, "'address' must be the Vault's http(s) base URL"),
            ("file address", new() { ["address"] = "file:///etc/passwd", ["token"] = "hvs.secret-token" }, "'address' must be the Vault's http(s) base URL"),
            ("no login", new() { ["address"] = "https://vault.example.com" }, "with 'token', or with AppRole 'role_id' and 'secret_id'"),
            ("both logins", new() { ["address"] = "https://vault.example.com", ["token"] = "hvs.secret-token", ["role_id"] = "r", ["secret_id"] = "s" }, "one of the two, not both"),
            ("half an AppRole", new() { ["address"] = "https://vault.example.com", ["role_id"] = "r" }, "with 'token', or with AppRole"),
            ("bad CA", new() { ["address"] = "https://vault.example.com", ["token"] = "hvs.secret-token", ["ca_certificate"] = "nope" }, "'ca_certificate' is not a PEM certificate"),
            ("unknown field", new() { ["address"] = "https://vault.example.com", ["token"] = "hvs.secret-token", ["password"] = "x" }, "not 'password'"),
        };
        foreach (var (why, fields, expected) in cases)
        {
            var refused = await ConnectAsync(tenant, fields, $"bad-{why.Replace(' ', '-')}");
            Assert.True(refused.Error?.Code == "validation_failed", $"{why}: {refused.Error?.Code}");
            var message = Assert.Single(refused.Error!.FieldErrors!["fields"]);
            Assert.Contains(expected, message);
            Assert.DoesNotContain("hvs.secret-token", message);
        }

        var stored = await ConnectAsync(tenant, TokenConnection(_tenantVault.Address, "hvs.secret-token"));
        Assert.DoesNotContain("hvs.secret-token", JsonSerializer.Serialize(stored.Value));
        var integration = await _host.IntegrationAsync(tenant, stored.Value.Reference, "direct");
        var direct = await _host.RevealAsync(tenant, integration.Id);
        Assert.Equal("credential_denied", direct.Error?.Code);
        Assert.Contains("not a secret to send anywhere", direct.Error!.Detail);

        Assert.Equal("validation_failed", (await _host.SendAsync(new CreateIntegration.Command("bad-name", "openai",
            CredentialRef: $"hcvault://team vault@kv/{Path}#api_key"), tenant)).Error?.Code);
    }

    [Fact]
    public async Task A_vault_under_a_private_CA_is_trusted_through_the_connections_ca_certificate_and_not_without_it()
    {
        var pki = TestPki.Create("tenant-vault-ca");
        await using var https = await FakeHashiCorpVault.StartAsync(pki.ServeHttps());
        Assert.StartsWith("https://", https.Address);
        var tenant = TestEnvironment.NewTenant();
        https.Tokens["hvs.tls"] = true;
        https.Secrets[$"kv/{Path}"] = new() { ["api_key"] = "sk-over-tls" };

        var trusting = TokenConnection(https.Address, "hvs.tls");
        trusting["ca_certificate"] = pki.AuthorityPem;
        Assert.True((await ConnectAsync(tenant, trusting, "tls-vault")).IsSuccess);
        Assert.True((await ConnectAsync(tenant, TokenConnection(https.Address, "hvs.tls"), "no-ca")).IsSuccess);
        var trusted = await _host.IntegrationAsync(tenant, $"hcvault://tls-vault@kv/{Path}#api_key", "trusted");
        var untrusted = await _host.IntegrationAsync(tenant, $"hcvault://no-ca@kv/{Path}#api_key", "untrusted");

        Assert.Equal("sk-over-tls", (await _host.RevealAsync(tenant, trusted.Id)).Value);
        var refused = await _host.RevealAsync(tenant, untrusted.Id);
        Assert.Equal("upstream_unreachable", refused.Error?.Code);
        Assert.Contains("its certificate is not trusted (check ca_certificate)", refused.Error!.Detail);
        Assert.Single(https.Requests);
    }
}
