using System.Text.Json;
using Integrations.Common;
using Integrations.Features.Credentials;
using Integrations.Features.Datasources;
using Integrations.Features.Integrations;
using Integrations.Features.McpServers;
using Integrations.Features.Policies;
using Integrations.Infrastructure.Vault;
using Integrations.Tests.Support;

namespace Integrations.Tests.Credentials;

/// <summary>
/// Attacks on where a secret is sent: a write-scoped key attaching the tenant's credentials to a URL of its choosing,
/// a URL changed after attaching, an unbound credential under a policy that requires binding.
/// </summary>
public sealed class CredentialDestinationTests(VaultFixture fixture) : IClassFixture<VaultFixture>
{
    private ServiceHost Host => fixture.Host;

    private string Cs => Host.ConnectionString;

    private static readonly string[] WriteOnly = [Scopes.Read, Scopes.Write];

    private async Task<Credential.Response> StoreBoundAsync(string tenant, string secret, params string[] hosts)
    {
        var stored = await Host.SendAsync(new StoreCredential.Command("bound", "api_key", Secret: secret, AllowedHosts: hosts), tenant);
        Assert.True(stored.IsSuccess, stored.Error?.Detail);
        return stored.Value;
    }

    private Task<Result<Integration.Response>> CreateAsync(string tenant, string? baseUrl, string reference, string provider = "openai_compatible", params string[] scopes) =>
        Host.SendAsync(new CreateIntegration.Command($"llm-{Guid.NewGuid():N}", provider, BaseUrl: baseUrl, CredentialRef: reference), tenant, scopes);

    private Task<long> CountAsync(string table, string tenant) =>
        OwnerSql.ScalarAsync<long>(Cs, $"SELECT count(*) FROM {table} WHERE tenant_id = @tenant", new { tenant });

    [Fact]
    public async Task A_write_scoped_key_without_credentials_use_cannot_attach_any_credential_anywhere()
    {
        var tenant = TestEnvironment.NewTenant();
        var stored = await Host.StoreAsync(tenant, "sk-victim");
        var encrypted = await Host.SendAsync(new EncryptCredential.Command("sk-encrypted-victim"), tenant, Scopes.Admin);
        var plain = await Host.IntegrationAsync(tenant, credentialRef: null);
        await using var attacker = new TestMcpServer();
        await attacker.StartAsync();

        var attempts = new Func<Task<Error?>>[]
        {
            async () => (await CreateAsync(tenant, "https://attacker.test/v1", stored.Reference, scopes: WriteOnly)).Error,
            async () => (await CreateAsync(tenant, "https://attacker.test/v1", encrypted.Value.Reference, scopes: WriteOnly)).Error,
            async () => (await Host.SendAsync(new UpdateIntegration.Command(plain.Id, new UpdateIntegration.Body(CredentialRef: stored.Reference)), tenant, WriteOnly)).Error,
            async () => (await Host.SendAsync(new RegisterMcpServer.Command("attacker", attacker.Endpoint.ToString(), stored.Reference), tenant, WriteOnly)).Error,
            async () => (await Host.SendAsync(new RegisterDatasource.Command("attacker", "127.0.0.1", "db", "u", stored.Reference, TlsMode: "disable"), tenant, WriteOnly)).Error,
            async () => (await Host.SendAsync(new GrantCredential.Command(stored.Id, CredentialAccessor.Integration, plain.Id), tenant, WriteOnly)).Error,
        };
        foreach (var attempt in attempts)
        {
            var error = await attempt();
            Assert.Equal(("forbidden", 403), (error?.Code, error?.Status));
            Assert.Contains("credentials:use", error!.Detail);
        }

        Assert.Empty(attacker.ReceivedRequests);
        Assert.Equal(0L, await CountAsync("credential_grants", tenant));
        Assert.Equal(1L, await CountAsync("cus_integrations", tenant));
        Assert.Equal(0L, await CountAsync("mcp_servers", tenant));
        Assert.Equal(0L, await CountAsync("datasources", tenant));
        // The scope of its own is enough (with write for the object itself); admin implies it.
        Assert.True((await CreateAsync(tenant, "https://llm.example.com/v1", stored.Reference, scopes: [Scopes.Write, Scopes.CredentialsUse])).IsSuccess);
        Assert.True((await CreateAsync(tenant, "https://llm.example.com/v1", stored.Reference, scopes: [Scopes.Admin])).IsSuccess);
    }

    [Fact]
    public async Task A_credential_bound_to_hosts_attaches_only_to_destinations_on_them()
    {
        var tenant = TestEnvironment.NewTenant();
        var bound = await StoreBoundAsync(tenant, "sk-bound", "API.OpenAI.com.", "*.example.com");
        Assert.Equal(new[] { "api.openai.com", "*.example.com" }, bound.AllowedHosts);
        await using var attacker = new TestMcpServer();
        await attacker.StartAsync();

        Assert.True((await CreateAsync(tenant, null, bound.Reference, provider: "openai")).IsSuccess);
        Assert.True((await CreateAsync(tenant, "https://llm.eu.example.com/v1", bound.Reference)).IsSuccess);

        var elsewhere = new Func<Task<Error?>>[]
        {
            async () => (await CreateAsync(tenant, "https://attacker.test/v1", bound.Reference)).Error,
            async () => (await CreateAsync(tenant, "https://example.com.attacker.test/v1", bound.Reference)).Error,
            async () => (await CreateAsync(tenant, "https://example.com/v1", bound.Reference)).Error,
            async () => (await CreateAsync(tenant, null, bound.Reference, provider: "anthropic")).Error,
            async () => (await Host.SendAsync(new RegisterMcpServer.Command("attacker", attacker.Endpoint.ToString(), bound.Reference), tenant)).Error,
            async () => (await Host.SendAsync(new RegisterDatasource.Command("attacker", "127.0.0.1", "db", "u", bound.Reference, TlsMode: "disable"), tenant)).Error,
        };
        foreach (var attempt in elsewhere)
        {
            var error = await attempt();
            Assert.Equal(("credential_host_not_allowed", 422), (error?.Code, error?.Status));
            Assert.Contains("api.openai.com", error!.Detail);
        }

        // A grant by hand is an attachment too.
        var unbound = await Host.IntegrationAsync(tenant, credentialRef: null, baseUrl: "https://attacker.test/v1");
        var grant = await Host.SendAsync(new GrantCredential.Command(bound.Id, CredentialAccessor.Integration, unbound.Id), tenant);
        Assert.Equal("credential_host_not_allowed", grant.Error?.Code);

        Assert.Empty(attacker.ReceivedRequests);
        Assert.Equal(0L, await CountAsync("mcp_servers", tenant));
        Assert.Equal(2L, await OwnerSql.ScalarAsync<long>(Cs, "SELECT count(*) FROM credential_grants WHERE tenant_id = @tenant", new { tenant }));
    }

    [Fact]
    public async Task Changing_the_url_after_attaching_does_not_carry_the_secret_along()
    {
        var tenant = TestEnvironment.NewTenant();
        var bound = await StoreBoundAsync(tenant, "sk-follows-the-url", "llm.example.com");
        var integration = (await CreateAsync(tenant, "https://llm.example.com/v1", bound.Reference)).Value;
        Assert.Equal("sk-follows-the-url", (await Host.RevealAsync(tenant, integration.Id)).Value);

        // The API refuses the move; a row changed any other way (plain SQL, a restore) is caught when the secret is asked for.
        var moved = await Host.SendAsync(new UpdateIntegration.Command(integration.Id, new UpdateIntegration.Body(BaseUrl: "https://attacker.test/v1")), tenant);
        Assert.Equal("credential_host_not_allowed", moved.Error?.Code);
        await OwnerSql.ExecuteAsync(Cs, "UPDATE cus_integrations SET base_url = 'https://attacker.test/v1' WHERE id = @id", new { id = integration.Id });
        var refused = await Host.RevealAsync(tenant, integration.Id);

        Assert.Equal(("credential_host_not_allowed", 422), (refused.Error?.Code, refused.Error?.Status));
        Assert.Contains("attacker.test", refused.Error!.Detail);
        Assert.DoesNotContain("sk-follows-the-url", refused.Error.Detail);
        Assert.Equal(("denied", "host_not_allowed"), (await VaultTestKit.AccessLogAsync(Cs, tenant)).Select(l => (l.Outcome, l.Reason)).Last());
    }

    [Fact]
    public async Task An_mcp_server_whose_url_changes_after_attaching_gets_no_secret_on_discovery_health_or_tool_calls()
    {
        await using var mcp = new TestMcpServer { RequiredBearerToken = "mcp-bound-token" };
        await mcp.StartAsync();
        var tenant = TestEnvironment.NewTenant();
        var bound = await StoreBoundAsync(tenant, "mcp-bound-token", mcp.Endpoint.Host);
        var registered = await Host.SendAsync(new RegisterMcpServer.Command("bound", mcp.Endpoint.ToString(), bound.Reference), tenant);
        Assert.True(registered.IsSuccess, registered.Error?.Detail);
        var server = registered.Value.Server.Id;
        var echo = registered.Value.Tools.Single(t => t.Name == "echo");

        // The row now points at another host name (here: the same server under another name, as an attacker's would be).
        var elsewhere = new UriBuilder(mcp.Endpoint) { Host = "localhost" }.Uri.ToString();
        await OwnerSql.ExecuteAsync(Cs, "UPDATE mcp_servers SET url = @elsewhere WHERE id = @server", new { elsewhere, server });
        mcp.ClearReceived();

        var discovered = await Host.SendAsync(new DiscoverMcpServer.Command(server), tenant);
        var health = await Host.SendAsync(new CheckMcpServerHealth.Command(server), tenant);
        var invoked = await Host.SendAsync(new InvokeMcpTool.Command(server, echo.Id, JsonDocument.Parse("""{"message":"hi"}""").RootElement.Clone()), tenant);

        Assert.Equal("credential_host_not_allowed", discovered.Error?.Code);
        Assert.Equal("credential_host_not_allowed", health.Error?.Code);
        Assert.False(invoked.IsSuccess);
        Assert.DoesNotContain(mcp.ReceivedRequests, r => r.Authorization is not null);
        Assert.True(await OwnerSql.ScalarAsync<long>(Cs,
            "SELECT count(*) FROM credential_access_log WHERE tenant_id = @tenant AND outcome = 'denied' AND reason = 'host_not_allowed'", new { tenant }) >= 3);
    }

    [Fact]
    public async Task Pointing_an_integration_that_holds_a_credential_at_a_new_base_url_is_attaching_it_again()
    {
        var tenant = TestEnvironment.NewTenant();
        var unbound = await Host.StoreAsync(tenant, "sk-unbound-move");
        var bound = await StoreBoundAsync(tenant, "sk-bound-move", "llm.example.com", "llm2.example.com");
        var withUnbound = (await CreateAsync(tenant, "https://llm.example.com/v1", unbound.Reference)).Value;
        var withBound = (await CreateAsync(tenant, "https://llm.example.com/v1", bound.Reference)).Value;

        // A write key cannot move a secret it may not attach (then ask for a health check to have it sent there).
        var moved = await Host.SendAsync(new UpdateIntegration.Command(withUnbound.Id, new UpdateIntegration.Body(BaseUrl: "https://attacker.test/v1")), tenant, WriteOnly);
        Assert.Equal("forbidden", moved.Error?.Code);
        var outside = await Host.SendAsync(new UpdateIntegration.Command(withBound.Id, new UpdateIntegration.Body(BaseUrl: "https://attacker.test/v1")), tenant);
        Assert.Equal("credential_host_not_allowed", outside.Error?.Code);
        Assert.Equal(2L, await OwnerSql.ScalarAsync<long>(Cs,
            "SELECT count(*) FROM cus_integrations WHERE tenant_id = @tenant AND base_url = 'https://llm.example.com/v1'", new { tenant }));

        Assert.True((await Host.SendAsync(new UpdateIntegration.Command(withBound.Id, new UpdateIntegration.Body(BaseUrl: "https://llm2.example.com/v1")), tenant)).IsSuccess);
        Assert.True((await Host.SendAsync(new UpdateIntegration.Command(withUnbound.Id, new UpdateIntegration.Body(Name: "renamed")), tenant, WriteOnly)).IsSuccess);
    }

    [Fact]
    public async Task The_credential_policy_makes_binding_mandatory_for_attaching()
    {
        var tenant = TestEnvironment.NewTenant();
        var unbound = await Host.StoreAsync(tenant, "sk-unbound");
        var bound = await StoreBoundAsync(tenant, "sk-bound", "llm.example.com");
        var encrypted = await Host.SendAsync(new EncryptCredential.Command("sk-encrypted"), tenant, Scopes.Admin);
        Assert.False((await Host.SendAsync(new GetCredentialPolicy.Query(), tenant)).Value.RequireAllowedHosts);

        Assert.Equal("forbidden", (await Host.SendAsync(new UpdateCredentialPolicy.Command(true), tenant, Scopes.Read, Scopes.Write, Scopes.CredentialsUse)).Error?.Code);
        var policy = await Host.SendAsync(new UpdateCredentialPolicy.Command(true), tenant, Scopes.Admin);
        Assert.True(policy.Value.RequireAllowedHosts);
        Assert.True((await Host.SendAsync(new GetCredentialPolicy.Query(), tenant)).Value.RequireAllowedHosts);

        var refused = (await CreateAsync(tenant, "https://llm.example.com/v1", unbound.Reference)).Error;
        Assert.Equal(("credential_unbound", 422), (refused?.Code, refused?.Status));
        Assert.Equal("credential_unbound", (await CreateAsync(tenant, "https://llm.example.com/v1", encrypted.Value.Reference)).Error?.Code);
        Assert.True((await CreateAsync(tenant, "https://llm.example.com/v1", bound.Reference)).IsSuccess);

        // Another tenant's policy is its own.
        var other = TestEnvironment.NewTenant();
        Assert.True((await CreateAsync(other, "https://llm.example.com/v1", (await Host.StoreAsync(other, "sk-other")).Reference)).IsSuccess);
        Assert.Equal(1L, await OwnerSql.AuditCountAsync(Cs, tenant, UpdateCredentialPolicy.Command.Operation));
    }

    [Fact]
    public async Task Only_admin_changes_where_a_stored_secret_may_go_and_hosts_are_plain_names_or_one_leading_wildcard()
    {
        var tenant = TestEnvironment.NewTenant();
        var stored = await Host.StoreAsync(tenant, "sk-widen");

        var widened = await Host.SendAsync(new UpdateCredential.Command(stored.Id, new UpdateCredential.Body(AllowedHosts: ["attacker.test"])), tenant, WriteOnly);
        Assert.Equal("forbidden", widened.Error?.Code);

        var updated = await Host.SendAsync(new UpdateCredential.Command(stored.Id, new UpdateCredential.Body(AllowedHosts: ["llm.example.com"])), tenant, Scopes.Admin);
        Assert.Equal(new[] { "llm.example.com" }, updated.Value.AllowedHosts);
        var cleared = await Host.SendAsync(new UpdateCredential.Command(stored.Id, new UpdateCredential.Body(AllowedHosts: [])), tenant, Scopes.Admin);
        Assert.Null(cleared.Value.AllowedHosts);
        var rotated = await Host.SendAsync(new RotateCredential.Command(stored.Id, new RotateCredential.Body(Secret: "sk-new", AllowedHosts: ["new.example.com"])), tenant);
        Assert.Equal(2, rotated.Value.Version);
        Assert.Equal(new[] { "new.example.com" }, rotated.Value.AllowedHosts);

        foreach (var hosts in new[] { new[] { "*" }, ["*.com"], ["https://llm.example.com"], ["llm.example.com/v1"], ["a b"], ["*.*.example.com"], ["user@llm.example.com"], [""] })
        {
            var refused = await Host.SendAsync(new StoreCredential.Command($"k-{Guid.NewGuid():N}", "api_key", Secret: "x", AllowedHosts: hosts), tenant);
            Assert.Contains("allowed_hosts", refused.Error!.FieldErrors!.Keys);
        }
        Assert.Contains("allowed_hosts",
            (await Host.SendAsync(new StoreCredential.Command("empty", "api_key", Secret: "x", AllowedHosts: []), tenant)).Error!.FieldErrors!.Keys);
    }

    [Theory]
    [InlineData("api.example.com", "api.example.com", true)]
    [InlineData("api.example.com", "API.EXAMPLE.COM.", true)]
    [InlineData("*.example.com", "a.b.example.com", true)]
    [InlineData("*.example.com", "example.com", false)]
    [InlineData("*.example.com", "evilexample.com", false)]
    [InlineData("*.example.com", "example.com.evil.test", false)]
    [InlineData("api.example.com", "api.example.com.evil.test", false)]
    [InlineData("10.0.0.5", "10.0.0.5", true)]
    [InlineData("::1", "[::1]", true)]
    public void Host_matching_is_exact_or_below_a_wildcard_domain(string allowed, string host, bool allows) =>
        Assert.Equal(allows, CredentialHosts.Allows(CredentialHosts.Normalize([allowed])!, host));
}
