using System.Text.Json;
using System.Text.Json.Nodes;
using Integrations.Features.Credentials;
using Integrations.Features.Integrations;
using Integrations.Features.LlmGateway;
using Integrations.Features.McpServers;
using Integrations.Infrastructure.Vault;
using Integrations.Tests.Support;
using Microsoft.AspNetCore.Http;

namespace Integrations.Tests.Credentials;

/// <summary>
/// oauth2_refresh_token credentials against a real OAuth 2.0 server (oauth2-mock-server from npm, which rotates the
/// refresh token on every use): the refresh grant, the rotated token sealed in place and used after a restart, and a
/// refused access token renewed once when an MCP server answers 401.
/// </summary>
public sealed class OAuthRefreshTokenTests : IAsyncLifetime
{
    private const string ClientId = "integrations-client";
    private const string ClientSecret = "cs-refresh-secret";
    private const string StoredRefreshToken = "rt-initial-0f8e2c";

    // No health sweep: its pings would take the 401 a test arranges for a tool call.
    private static readonly Dictionary<string, string?> Settings = new() { ["Integrations:Health:ProbeRetries"] = "0", ["Integrations:Mcp:HealthSweepInterval"] = "00:00:00" };

    private ServiceHost _host = null!;
    private FakeProvider _provider = null!;

    public async Task InitializeAsync()
    {
        _host = await VaultTestKit.StartHostAsync(Settings);
        _provider = await FakeProvider.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await _host.DisposeAsync();
        await _provider.DisposeAsync();
    }

    private static async Task<Credential.Response> StoreAsync(ServiceHost host, string tenant, OAuthServer oauth)
    {
        var stored = await host.SendAsync(new StoreCredential.Command("idp-refresh", CredentialTypes.OAuth2RefreshToken, Fields: new Dictionary<string, string>
        {
            ["token_url"] = oauth.TokenUrl,
            ["client_id"] = ClientId,
            ["client_secret"] = ClientSecret,
            ["refresh_token"] = StoredRefreshToken,
            ["scope"] = "tools:call",
        }), tenant);
        Assert.True(stored.IsSuccess, stored.Error?.Detail);
        return stored.Value;
    }

    [Fact]
    public async Task The_refresh_grant_is_used_the_rotated_refresh_token_is_sealed_in_place_and_used_after_a_restart()
    {
        await using var oauth = await OAuthServer.StartAsync(ClientId, ClientSecret);
        var tenant = TestEnvironment.NewTenant();
        var credential = await StoreAsync(_host, tenant, oauth);
        var integration = await _host.IntegrationAsync(tenant, credential.Reference, baseUrl: $"{_provider.BaseUrl}/v1");

        var healthy = await _host.SendAsync(new CheckIntegrationHealth.Command(integration.Id), tenant);
        Assert.Equal("healthy", healthy.Value.Health);
        var first = (await oauth.RequestsAsync(1))[0];
        Assert.Equal(("refresh_token", StoredRefreshToken, "tools:call", ClientId, true), (first.GrantType, first.RefreshToken, first.Scope, first.ClientId, first.Authenticated));
        Assert.False(string.IsNullOrEmpty(first.IssuedRefreshToken));
        Assert.StartsWith("Bearer ey", _provider.Requests.Last().Headers["authorization"]);
        Assert.False(await VaultTestKit.DatabaseContainsAsync(_host.ConnectionString, tenant, first.IssuedRefreshToken!), "the rotated token is sealed, not stored in clear");
        Assert.Equal(1, await OwnerSql.ScalarAsync<int>(_host.ConnectionString, "SELECT version FROM credentials WHERE id = @Id", new { credential.Id }));

        // A new process knows no token: it exchanges the refresh token it reads from the vault, which is the rotated one.
        await using (var restarted = await ServiceHost.StartAsync(Settings, connectionString: _host.ConnectionString))
        {
            var again = await restarted.SendAsync(new CheckIntegrationHealth.Command(integration.Id), tenant);
            Assert.Equal("healthy", again.Value.Health);
        }
        var second = (await oauth.RequestsAsync(2))[1];
        Assert.Equal(("refresh_token", first.IssuedRefreshToken), (second.GrantType, second.RefreshToken));
        var responses = await _host.SendAsync(new GetCredential.Query(credential.Id), tenant);
        Assert.DoesNotContain(first.IssuedRefreshToken!, JsonSerializer.Serialize(responses.Value), StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_mcp_server_that_answers_401_gets_a_renewed_token_once_and_the_call_succeeds()
    {
        await using var oauth = await OAuthServer.StartAsync(ClientId, ClientSecret);
        await using var mcp = new TestMcpServer();
        await mcp.StartAsync();
        var tenant = TestEnvironment.NewTenant();
        var credential = await StoreAsync(_host, tenant, oauth);
        var registered = await _host.SendAsync(new RegisterMcpServer.Command("oauth-mcp", mcp.Endpoint.ToString(), credential.Reference), tenant);
        Assert.True(registered.IsSuccess, registered.Error?.Detail);
        // Hosts of other test classes that sweep every tenant's servers (McpHealthTests) would ping this one, taking the
        // arranged 401 and exchanging tokens of their own: it is not due for a health check while this test runs.
        await OwnerSql.ExecuteAsync(_host.ConnectionString, "UPDATE mcp_servers SET last_health_check_at = now() + interval '1 hour' WHERE id = @Id",
            new { registered.Value.Server.Id });
        var echo = registered.Value.Tools.Single(t => t.Name == "echo");
        var arguments = JsonDocument.Parse("""{"message":"hi"}""").RootElement.Clone();
        await oauth.RequestsAsync(1);

        mcp.ClearReceived();
        mcp.FailNext(1, 401);
        var call = await _host.SendAsync(new InvokeMcpTool.Command(registered.Value.Server.Id, echo.Id, arguments), tenant);

        Assert.True(call.IsSuccess, call.Error?.Detail);
        var exchanges = await oauth.RequestsAsync(2);
        Assert.Equal(exchanges[0].IssuedRefreshToken, exchanges[1].RefreshToken);
        // (The renewed access token may equal the refused one: the test server signs the same claims within one second.)
        Assert.All(mcp.ReceivedAuthorizationHeaders, h => Assert.StartsWith("Bearer ey", h));

        // Refused again after the renewal: the call fails (one renewal per call), as a refusal of the credential.
        mcp.FailNext(5, 401);
        var refused = await _host.SendAsync(new InvokeMcpTool.Command(registered.Value.Server.Id, echo.Id, arguments), tenant);
        Assert.Equal(("upstream_error", 401), (refused.Error?.Code, refused.Error?.Extensions?["upstream_status"]));
        await oauth.RequestsAsync(3);
    }

    [Fact]
    public async Task An_llm_provider_that_answers_401_gets_a_renewed_token_once_and_the_request_succeeds()
    {
        await using var oauth = await OAuthServer.StartAsync(ClientId, ClientSecret);
        var tenant = TestEnvironment.NewTenant();
        var credential = await StoreAsync(_host, tenant, oauth);
        var integration = await _host.IntegrationAsync(tenant, credential.Reference, name: "oauth-llm", baseUrl: $"{_provider.BaseUrl}/v1");
        Assert.True((await _host.SendAsync(new EnableIntegration.Command(integration.Id), tenant)).IsSuccess);
        var refusals = 1;
        _provider.Respond = async (context, _) =>
        {
            if (Interlocked.Decrement(ref refusals) >= 0)
            {
                context.Response.StatusCode = 401;
                await context.Response.WriteAsJsonAsync(new { error = new { message = "token expired", type = "invalid_request_error" } });
                return;
            }
            await context.Response.WriteAsJsonAsync(new
            {
                id = "chatcmpl-1",
                @object = "chat.completion",
                model = "gpt-test",
                choices = new[] { new { index = 0, message = new { role = "assistant", content = "hi" }, finish_reason = "stop" } },
                usage = new { prompt_tokens = 3, completion_tokens = 1, total_tokens = 4 },
            });
        };
        var body = JsonNode.Parse("""{"model":"oauth-llm/gpt-test","messages":[{"role":"user","content":"hello"}]}""")!.AsObject();

        var answered = await _host.SendAsync(new InvokeLlm.Command(InvokeLlm.ChatCompletions, body), tenant);

        Assert.True(answered.IsSuccess, answered.Error?.Detail);
        var exchanges = await oauth.RequestsAsync(2);
        Assert.Equal(exchanges[0].IssuedRefreshToken, exchanges[1].RefreshToken);
        var sent = _provider.Requests.Where(r => r.PathAndQuery.EndsWith("/chat/completions", StringComparison.Ordinal)).ToList();
        Assert.Equal(2, sent.Count);
        Assert.All(sent, r => Assert.StartsWith("Bearer ey", r.Headers["authorization"]));

        // An api_key credential cannot be renewed: a 401 is answered as it is, after one request.
        refusals = 1;
        var plain = await _host.SendAsync(new StoreCredential.Command("plain-key", CredentialTypes.ApiKey, Secret: "sk-plain-key-0123456789"), tenant);
        var keyed = await _host.IntegrationAsync(tenant, plain.Value.Reference, name: "keyed-llm", baseUrl: $"{_provider.BaseUrl}/v1");
        await _host.SendAsync(new EnableIntegration.Command(keyed.Id), tenant);
        var before = _provider.Requests.Count;
        var refused = await _host.SendAsync(new InvokeLlm.Command(InvokeLlm.ChatCompletions,
            JsonNode.Parse("""{"model":"keyed-llm/gpt-test","messages":[{"role":"user","content":"hello"}]}""")!.AsObject()), tenant);
        Assert.False(refused.IsSuccess);
        Assert.Equal(before + 1, _provider.Requests.Count);
    }

    [Theory]
    [InlineData("refresh_token", null, "'fields' needs 'refresh_token'.")]
    [InlineData("audience", "https://api.example.com", "'fields' takes only token_url, client_id, refresh_token, client_secret, scope; not 'audience'.")]
    [InlineData("token_url", "ftp://idp.example.com/token", "'token_url' must be an absolute http(s) URL without user info or fragment.")]
    public async Task Fields_are_checked_for_the_refresh_token_type(string field, string? value, string message)
    {
        var fields = new Dictionary<string, string>
        {
            ["token_url"] = "https://idp.example.com/token",
            ["client_id"] = ClientId,
            ["refresh_token"] = StoredRefreshToken,
        };
        if (value is null) fields.Remove(field);
        else fields[field] = value;

        var refused = await _host.SendAsync(new StoreCredential.Command("bad", CredentialTypes.OAuth2RefreshToken, Fields: fields), TestEnvironment.NewTenant());

        Assert.Equal("validation_failed", refused.Error?.Code);
        Assert.Equal([message], refused.Error!.FieldErrors!["fields"]);
    }
}
