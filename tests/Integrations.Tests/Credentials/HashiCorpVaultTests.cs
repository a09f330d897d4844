using System.Text.Json;
using Integrations.Common;
using Integrations.Features.Integrations;
using Integrations.Features.Policies;
using Integrations.Tests.Support;

namespace Integrations.Tests.Credentials;

/// <summary>
/// hcvault:// references resolved from a HashiCorp Vault KV version 2 engine (a local server speaking Vault's HTTP
/// API, <see cref="FakeHashiCorpVault"/>), behind the same resolver as the built-in vault: token and AppRole
/// authentication, namespace, the read cache, tenant paths, and the attacks.
/// </summary>
public sealed class HashiCorpVaultTests : IAsyncLifetime
{
    private const string StaticToken = "hvs.static-token-for-tests";

    private FakeHashiCorpVault _vault = null!;
    private FakeProvider _provider = null!;

    public async Task InitializeAsync()
    {
        _vault = await FakeHashiCorpVault.StartAsync();
        _vault.Tokens[StaticToken] = true;
        _provider = await FakeProvider.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await _vault.DisposeAsync();
        await _provider.DisposeAsync();
    }

    private Task<ServiceHost> HostAsync(bool appRole = false, string cacheTtl = "01:00:00") => VaultTestKit.StartHostAsync(new Dictionary<string, string?>
    {
        ["Integrations:Vault:HashiCorp:Address"] = _vault.Address,
        ["Integrations:Vault:HashiCorp:Token"] = appRole ? null : StaticToken,
        ["Integrations:Vault:HashiCorp:RoleId"] = appRole ? FakeHashiCorpVault.RoleId : null,
        ["Integrations:Vault:HashiCorp:SecretId"] = appRole ? FakeHashiCorpVault.SecretId : null,
        ["Integrations:Vault:HashiCorp:Namespace"] = "team-a",
        ["Integrations:Vault:HashiCorp:CacheTtl"] = cacheTtl,
        ["Integrations:Health:ProbeRetries"] = "0",
    });

    private (string Tenant, string Reference, string Secret) SecretFor(string name = "openai")
    {
        var tenant = TestEnvironment.NewTenant();
        var secret = $"sk-hcv-{Guid.NewGuid():N}";
        _vault.Secrets[$"secret/tenants/{tenant}/{name}"] = new() { ["api_key"] = secret, ["org"] = "acme" };
        return (tenant, $"hcvault://secret/tenants/{tenant}/{name}#api_key", secret);
    }

    private List<FakeHashiCorpVault.Request> Reads(string tenant) =>
        _vault.Requests.Where(r => r.Method == "GET" && r.Path.Contains($"/tenants/{tenant}/")).ToList();

    [Fact]
    public async Task An_integration_sends_the_key_read_from_vault_and_the_access_is_logged_and_audited_without_the_secret()
    {
        await using var host = await HostAsync();
        var (tenant, reference, secret) = SecretFor();
        var integration = await host.IntegrationAsync(tenant, reference, baseUrl: $"{_provider.BaseUrl}/v1");

        var first = await host.SendAsync(new CheckIntegrationHealth.Command(integration.Id), tenant);
        var second = await host.SendAsync(new CheckIntegrationHealth.Command(integration.Id), tenant);

        Assert.Equal(("healthy", "healthy"), (first.Value.Health, second.Value.Health));
        Assert.All(_provider.Requests, r => Assert.Equal($"Bearer {secret}", r.Headers["authorization"]));
        var read = Assert.Single(Reads(tenant));   // the second check was served from the cache
        Assert.Equal($"/v1/secret/data/tenants/{tenant}/openai", read.Path);
        Assert.Equal((StaticToken, "team-a"), (read.Headers["x-vault-token"], read.Headers["x-vault-namespace"]));
        var log = await VaultTestKit.AccessLogAsync(host.ConnectionString, tenant);
        Assert.Equal([("allowed", "hashicorp_vault", reference), ("allowed", "hashicorp_vault", reference)], log);
        Assert.Equal(2, await OwnerSql.AuditCountAsync(host.ConnectionString, tenant, "credential.accessed"));
        Assert.False(await VaultTestKit.DatabaseContainsAsync(host.ConnectionString, tenant, secret));
    }

    [Fact]
    public async Task Without_a_cache_every_resolution_reads_vault_again()
    {
        await using var host = await HostAsync(cacheTtl: "00:00:00");
        var (tenant, reference, secret) = SecretFor();
        var integration = await host.IntegrationAsync(tenant, reference);

        Assert.Equal(secret, (await host.RevealAsync(tenant, integration.Id)).Value);
        _vault.Secrets[$"secret/tenants/{tenant}/openai"]["api_key"] = "sk-rotated-in-vault";
        Assert.Equal("sk-rotated-in-vault", (await host.RevealAsync(tenant, integration.Id)).Value);
        Assert.Equal(2, Reads(tenant).Count);
    }

    [Fact]
    public async Task AppRole_logs_in_once_per_lease_with_the_documented_body_and_again_when_vault_refuses_the_token()
    {
        _vault.LeaseSeconds = 1;
        await using var host = await HostAsync(appRole: true, cacheTtl: "00:00:00");
        var (tenant, reference, secret) = SecretFor();
        var integration = await host.IntegrationAsync(tenant, reference);
        var loginsBefore = _vault.Logins;

        await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => host.RevealAsync(tenant, integration.Id)));
        Assert.Equal(1, _vault.Logins - loginsBefore);   // concurrent callers share one login
        var login = _vault.Requests.First(r => r.Path == "/v1/auth/approle/login");
        var body = JsonDocument.Parse(login.Body).RootElement;
        Assert.Equal((FakeHashiCorpVault.RoleId, FakeHashiCorpVault.SecretId), (body.GetProperty("role_id").GetString(), body.GetProperty("secret_id").GetString()));
        Assert.Equal("team-a", login.Headers["x-vault-namespace"]);

        await Task.Delay(1100);   // past 80 % of the one-second lease
        Assert.Equal(secret, (await host.RevealAsync(tenant, integration.Id)).Value);
        Assert.Equal(2, _vault.Logins - loginsBefore);

        _vault.LeaseSeconds = 3600;
        await Task.Delay(1100);
        Assert.True((await host.RevealAsync(tenant, integration.Id)).IsSuccess);
        _vault.Tokens.Clear();   // Vault revoked every token it issued
        Assert.Equal(secret, (await host.RevealAsync(tenant, integration.Id)).Value);
        Assert.Equal(4, _vault.Logins - loginsBefore);
    }

    [Fact]
    public async Task A_tenant_reaches_only_its_own_paths_and_only_through_what_its_objects_hold()
    {
        await using var host = await HostAsync();
        var (victim, victimReference, victimSecret) = SecretFor();
        var attacker = TestEnvironment.NewTenant();

        // Another tenant's path, or a way out of one's own, is refused where it is attached.
        foreach (var reference in new[]
        {
            victimReference,
            $"hcvault://secret/tenants/{attacker}/../{victim}/openai#api_key",
            $"hcvault://secret/tenants/{attacker}#api_key",
            "hcvault://secret/openai#api_key",
            $"hcvault://secret/tenants/{attacker}/openai",
        })
        {
            var refused = await host.SendAsync(new CreateIntegration.Command($"x-{Guid.NewGuid():N}"[..20], "openai", CredentialRef: reference), attacker);
            Assert.Equal("validation_failed", refused.Error?.Code);
        }

        // Resolving a reference the object does not hold is refused too, and logged.
        var own = await host.IntegrationAsync(attacker, null);
        var resolved = await host.RevealAsync(attacker, own.Id, victimReference);
        Assert.Equal("credential_denied", resolved.Error?.Code);
        var ownReference = $"hcvault://secret/tenants/{attacker}/openai#api_key";
        Assert.Equal("credential_denied", (await host.RevealAsync(attacker, own.Id, ownReference)).Error?.Code);
        Assert.Empty(Reads(victim));
        Assert.Contains(("denied", "invalid_reference", victimReference), await VaultTestKit.AccessLogAsync(host.ConnectionString, attacker));
        Assert.Contains(("denied", "no_grant", ownReference), await VaultTestKit.AccessLogAsync(host.ConnectionString, attacker));
        Assert.False(await VaultTestKit.DatabaseContainsAsync(host.ConnectionString, attacker, victimSecret));
    }

    [Fact]
    public async Task Missing_secrets_fields_and_backends_are_clear_errors_and_a_policy_that_binds_hosts_refuses_hcvault()
    {
        await using var host = await HostAsync();
        var (tenant, reference, _) = SecretFor();
        var missingField = await host.IntegrationAsync(tenant, reference.Replace("#api_key", "#nope"), "f");
        var missingSecret = await host.IntegrationAsync(tenant, reference.Replace("/openai#", "/absent#"), "s");

        Assert.Equal("credential_not_found", (await host.RevealAsync(tenant, missingField.Id)).Error?.Code);
        Assert.Equal("credential_not_found", (await host.RevealAsync(tenant, missingSecret.Id)).Error?.Code);

        await using var unconfigured = await VaultTestKit.StartHostAsync();
        var elsewhere = await unconfigured.IntegrationAsync(tenant, reference, "u");
        var notConfigured = await unconfigured.RevealAsync(tenant, elsewhere.Id);
        Assert.Equal("credential_reference_invalid", notConfigured.Error?.Code);
        Assert.Contains("Integrations:Vault:HashiCorp:Address", notConfigured.Error!.Detail);

        var bound = TestEnvironment.NewTenant();
        Assert.True((await host.SendAsync(new UpdateCredentialPolicy.Command(true), bound, Scopes.Admin)).IsSuccess);
        var refused = await host.SendAsync(new CreateIntegration.Command("bound", "openai",
            CredentialRef: $"hcvault://secret/tenants/{bound}/openai#api_key"), bound);
        Assert.Equal("credential_unbound", refused.Error?.Code);
    }

    [Fact]
    public void Settings_refuse_an_address_that_is_not_http_and_a_vault_without_a_way_to_log_in()
    {
        Assert.Throws<InvalidOperationException>(() => Infrastructure.Vault.HashiCorpVaultSettings.FromConfiguration(
            TestEnvironment.Configuration("Host=x", new Dictionary<string, string?> { ["Integrations:Vault:HashiCorp:Address"] = "file:///etc/passwd", ["Integrations:Vault:HashiCorp:Token"] = "t" })));
        Assert.Throws<InvalidOperationException>(() => Infrastructure.Vault.HashiCorpVaultSettings.FromConfiguration(
            TestEnvironment.Configuration("Host=x", new Dictionary<string, string?> { ["Integrations:Vault:HashiCorp:Address"] = "https://vault.example.com" })));
    }
}
