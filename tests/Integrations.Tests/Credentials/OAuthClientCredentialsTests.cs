using System.Text;
using System.Text.Json;
using Integrations.Common;
using Integrations.Features.Credentials;
using Integrations.Features.Integrations;
using Integrations.Infrastructure.Vault;
using Integrations.Tests.Support;

namespace Integrations.Tests.Credentials;

/// <summary>
/// oauth2_client_credentials credentials against a real OAuth 2.0 server (oauth2-mock-server from npm): the access
/// token reaches the provider, the client authenticates as RFC 6749 says, tokens are kept and renewed once, and the
/// client secret goes nowhere else.
/// </summary>
public sealed class OAuthClientCredentialsTests : IAsyncLifetime
{
    private const string ClientId = "integrations-client";
    private const string ClientSecret = "cs-Zr8:q/w+e%2F";   // characters Basic auth must form-encode (§2.3.1)

    private ServiceHost _host = null!;
    private FakeProvider _provider = null!;

    public async Task InitializeAsync()
    {
        _host = await VaultTestKit.StartHostAsync(new Dictionary<string, string?> { ["Integrations:Health:ProbeRetries"] = "0" });
        _provider = await FakeProvider.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await _host.DisposeAsync();
        await _provider.DisposeAsync();
    }

    private async Task<(string Tenant, Guid IntegrationId, Credential.Response Credential)> IntegrationAsync(
        OAuthServer oauth, string secret = ClientSecret, IReadOnlyList<string>? allowedHosts = null)
    {
        var tenant = TestEnvironment.NewTenant();
        var stored = await _host.SendAsync(new StoreCredential.Command("idp", CredentialTypes.OAuth2ClientCredentials, Fields: new Dictionary<string, string>
        {
            ["token_url"] = oauth.TokenUrl,
            ["client_id"] = ClientId,
            ["client_secret"] = secret,
            ["scope"] = "models:read chat:write",
            ["audience"] = "https://llm.example.com",
        }, AllowedHosts: allowedHosts), tenant);
        Assert.True(stored.IsSuccess, stored.Error?.Detail);
        var integration = await _host.IntegrationAsync(tenant, stored.Value.Reference, baseUrl: $"{_provider.BaseUrl}/v1");
        return (tenant, integration.Id, stored.Value);
    }

    private static JsonElement Claims(string jwt) =>
        JsonDocument.Parse(Encoding.UTF8.GetString(Convert.FromBase64String(Pad(jwt.Split('.')[1].Replace('-', '+').Replace('_', '/'))))).RootElement;

    private static string Pad(string s) => s + new string('=', (4 - s.Length % 4) % 4);

    [Fact]
    public async Task The_provider_gets_a_token_from_the_real_server_the_client_authenticates_with_basic_and_one_token_serves_until_it_is_due()
    {
        await using var oauth = await OAuthServer.StartAsync(ClientId, ClientSecret);
        var (tenant, id, credential) = await IntegrationAsync(oauth);

        var first = await _host.SendAsync(new CheckIntegrationHealth.Command(id), tenant);
        var second = await _host.SendAsync(new CheckIntegrationHealth.Command(id), tenant);

        Assert.Equal(("healthy", "healthy"), (first.Value.Health, second.Value.Health));
        var sent = _provider.Requests.Select(r => r.Headers["authorization"]).Distinct().Single();
        Assert.StartsWith("Bearer ey", sent);
        var claims = Claims(sent["Bearer ".Length..]);
        Assert.Equal((oauth.Issuer.GetLeftPart(UriPartial.Authority), "models:read chat:write", "https://llm.example.com", ClientId),
            (claims.GetProperty("iss").GetString(), claims.GetProperty("scope").GetString(), claims.GetProperty("aud").GetString(), claims.GetProperty("client_id").GetString()));
        var request = (await oauth.RequestsAsync(1))[0];   // the second check used the kept token
        Assert.Equal(("client_credentials", "models:read chat:write", "https://llm.example.com", ClientId, true, "application/x-www-form-urlencoded"),
            (request.GrantType, request.Scope, request.Audience, request.ClientId, request.Authenticated, request.ContentType));
        Assert.DoesNotContain(_provider.Requests, r => r.Headers.Values.Any(v => v.Contains(ClientSecret, StringComparison.Ordinal)));
        Assert.False(await VaultTestKit.DatabaseContainsAsync(_host.ConnectionString, tenant, ClientSecret));
        Assert.False(await VaultTestKit.DatabaseContainsAsync(_host.ConnectionString, tenant, sent["Bearer ".Length..]));
        Assert.Equal([("allowed", "granted", credential.Reference), ("allowed", "granted", credential.Reference)],
            await VaultTestKit.AccessLogAsync(_host.ConnectionString, tenant));
    }

    [Fact]
    public async Task A_token_is_renewed_before_it_expires_once_for_all_concurrent_callers()
    {
        await using var oauth = await OAuthServer.StartAsync(ClientId, ClientSecret, expiresInSeconds: 2);
        var (tenant, id, _) = await IntegrationAsync(oauth);

        var tokens = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => _host.RevealAsync(tenant, id)));
        Assert.Single(tokens.Select(t => t.Value).Distinct());
        await oauth.RequestsAsync(1);

        await Task.Delay(TimeSpan.FromSeconds(1.8));   // past 2 s minus a fifth of its lifetime
        var renewed = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => _host.RevealAsync(tenant, id)));
        Assert.Single(renewed.Select(t => t.Value).Distinct());
        Assert.NotEqual(tokens[0].Value, renewed[0].Value);
        await oauth.RequestsAsync(2);
    }

    [Fact]
    public async Task A_refused_client_is_a_clear_error_logged_as_denied_and_never_kept()
    {
        await using var oauth = await OAuthServer.StartAsync(ClientId, ClientSecret);
        var (tenant, id, _) = await IntegrationAsync(oauth, secret: "wrong-secret-123");

        var refused = await _host.RevealAsync(tenant, id);
        var again = await _host.RevealAsync(tenant, id);

        Assert.Equal(("upstream_error", "upstream_error"), (refused.Error?.Code, again.Error?.Code));
        Assert.Contains("401, invalid_client", refused.Error!.Detail);
        Assert.DoesNotContain("wrong-secret-123", refused.Error.Detail);
        Assert.Equal(2, (await oauth.RequestsAsync(2)).Count(r => !r.Authenticated));   // a failure is not kept: asked again
        Assert.All(await VaultTestKit.AccessLogAsync(_host.ConnectionString, tenant), l => Assert.Equal(("denied", "token_exchange_failed"), (l.Outcome, l.Reason)));
    }

    [Fact]
    public async Task The_token_url_is_a_destination_of_the_secret_bound_hosts_and_the_egress_guard_apply()
    {
        await using var oauth = await OAuthServer.StartAsync(ClientId, ClientSecret);
        // Bound to the provider's host only: the client secret may not go to the token endpoint's host.
        var providerHost = new Uri(_provider.BaseUrl).Host;
        var (tenant, id, _) = await IntegrationAsync(oauth, allowedHosts: [providerHost]);
        Assert.Equal("localhost", oauth.Issuer.Host);
        Assert.NotEqual("localhost", providerHost);
        Assert.Equal("credential_host_not_allowed", (await _host.RevealAsync(tenant, id)).Error?.Code);
        Assert.Empty(oauth.Requests);

        var metadata = TestEnvironment.NewTenant();
        var stored = await _host.SendAsync(new StoreCredential.Command("idp", CredentialTypes.OAuth2ClientCredentials, Fields: new Dictionary<string, string>
        {
            ["token_url"] = "http://169.254.169.254/latest/api/token",
            ["client_id"] = ClientId,
            ["client_secret"] = ClientSecret,
        }), metadata);
        var integration = await _host.IntegrationAsync(metadata, stored.Value.Reference);
        Assert.Equal("ssrf_blocked", (await _host.RevealAsync(metadata, integration.Id)).Error?.Code);
    }

    [Theory]
    [InlineData("token_url")]
    [InlineData("client_id")]
    [InlineData("client_secret")]
    public async Task Storing_needs_each_required_field_and_refuses_others(string missing)
    {
        var fields = new Dictionary<string, string> { ["token_url"] = "https://idp.example.com/token", ["client_id"] = "c", ["client_secret"] = "s" };
        fields.Remove(missing);
        var refused = await _host.SendAsync(new StoreCredential.Command("idp", CredentialTypes.OAuth2ClientCredentials, Fields: fields), TestEnvironment.NewTenant());
        Assert.Equal("validation_failed", refused.Error?.Code);
        Assert.Contains(missing, refused.Error!.FieldErrors!["fields"][0]);

        var unknown = new Dictionary<string, string>(fields) { [missing] = "x", ["password"] = "p" };
        Assert.Equal("validation_failed", (await _host.SendAsync(new StoreCredential.Command("idp2", CredentialTypes.OAuth2ClientCredentials, Fields: unknown), TestEnvironment.NewTenant())).Error?.Code);
        var notUrl = new Dictionary<string, string> { ["token_url"] = "ftp://idp/token", ["client_id"] = "c", ["client_secret"] = "s" };
        Assert.Equal("validation_failed", (await _host.SendAsync(new StoreCredential.Command("idp3", CredentialTypes.OAuth2ClientCredentials, Fields: notUrl), TestEnvironment.NewTenant())).Error?.Code);
    }
}
