using System.Text.Json;
using Integrations.Features.Credentials;
using Integrations.Features.McpServers;
using Integrations.Tests.Support;

namespace Integrations.Tests.McpServers;

/// <summary>mcp_servers.update against real C# MCP servers: moved, re-credentialed, refused, and left as it was when it fails.</summary>
public sealed class UpdateMcpServerTests(ServiceFixture fixture) : IClassFixture<ServiceFixture>
{
    private ServiceHost Host => fixture.Host;

    private static JsonElement Message => JsonDocument.Parse("""{"message":"hi"}""").RootElement.Clone();

    private static async Task<TestMcpServer> StartAsync(string? token = null)
    {
        var server = new TestMcpServer { RequiredBearerToken = token };
        await server.StartAsync();
        return server;
    }

    private async Task<RegisterMcpServer.Response> RegisterAsync(string tenant, TestMcpServer server, string? credentialRef = null)
    {
        var result = await Host.SendAsync(new RegisterMcpServer.Command("moving", server.Endpoint.ToString(), credentialRef), tenant);
        Assert.True(result.IsSuccess, result.Error?.Detail);
        return result.Value;
    }

    private Task<Common.Result<ToolChanges>> UpdateAsync(string tenant, Guid id, UpdateMcpServer.Body body) =>
        Host.SendAsync(new UpdateMcpServer.Command(id, body), tenant);

    [Fact]
    public async Task A_new_url_keeps_approvals_and_overrides_of_unchanged_tools_drifts_changed_ones_and_calls_go_to_the_new_server()
    {
        await using var old = await StartAsync();
        await using var moved = await StartAsync();
        var tenant = TestEnvironment.NewTenant();
        var registered = await RegisterAsync(tenant, old);
        var echo = registered.Tools.Single(t => t.Name == "echo");
        Assert.NotEqual(ToolRisk.Medium, echo.RiskLevel);
        var overridden = await Host.SendAsync(new UpdateMcpTool.Command(registered.Server.Id, echo.Id, new(RiskLevel: ToolRisk.Medium, Reason: "reviewed")), tenant);
        Assert.True(overridden.IsSuccess, overridden.Error?.Detail);
        moved.SetTool(moved.Tools.Single(t => t.Name == "slow") with { Description = "Sleeps, then mails the result" });
        moved.RemoveTool("big");

        var updated = await UpdateAsync(tenant, registered.Server.Id, new(Name: "moved", Url: moved.Endpoint.ToString()));

        Assert.True(updated.IsSuccess, updated.Error?.Detail);
        Assert.Equal(("moved", moved.Endpoint.AbsoluteUri), (updated.Value.Server.Name, updated.Value.Server.Url));
        Assert.Equal("slow", Assert.Single(updated.Value.Drifted).Tool.Name);
        Assert.Equal("big", Assert.Single(updated.Value.Removed).Name);
        Assert.Empty(updated.Value.Added);
        var echoAfter = (await Host.SendAsync(new GetMcpTool.Query(registered.Server.Id, echo.Id), tenant)).Value;
        Assert.Equal((McpTool.Active, true, ToolRisk.Medium, echo.ApprovedHash), (echoAfter.Status, echoAfter.Enabled, echoAfter.RiskLevel, echoAfter.ApprovedHash));

        var before = old.ToolCalls;
        var call = await Host.SendAsync(new InvokeMcpTool.Command(registered.Server.Id, echo.Id, Message), tenant);
        Assert.True(call.IsSuccess, call.Error?.Detail);
        Assert.Equal((before, 1), (old.ToolCalls, moved.ToolCalls));
        Assert.Equal(1L, await OwnerSql.AuditCountAsync(Host.ConnectionString, tenant, "mcp_servers.update"));
    }

    [Fact]
    public async Task A_new_credential_is_what_the_server_is_asked_with_and_the_old_grant_goes()
    {
        await using var secured = await StartAsync(token: "token-2");
        var tenant = TestEnvironment.NewTenant();
        var first = (await Host.SendAsync(new StoreCredential.Command("first", "bearer_token", Secret: "token-1"), tenant)).Value;
        var second = (await Host.SendAsync(new StoreCredential.Command("second", "bearer_token", Secret: "token-2"), tenant)).Value;
        secured.RequiredBearerToken = "token-1";
        var registered = await RegisterAsync(tenant, secured, first.Reference);
        secured.RequiredBearerToken = "token-2";
        secured.ClearReceived();

        var updated = await UpdateAsync(tenant, registered.Server.Id, new(CredentialRef: second.Reference));

        Assert.True(updated.IsSuccess, updated.Error?.Detail);
        Assert.Equal(second.Reference, updated.Value.Server.CredentialRef);
        Assert.All(secured.ReceivedAuthorizationHeaders.Where(h => h is not null), h => Assert.Equal("Bearer token-2", h));
        var grants = await OwnerSql.ScalarAsync<long>(Host.ConnectionString,
            $"SELECT count(*) FROM credential_grants WHERE tenant_id = '{tenant}' AND accessor_id = '{registered.Server.Id}' AND credential_id = '{first.Id}'");
        Assert.Equal(0L, grants);
        var echo = registered.Tools.Single(t => t.Name == "echo");
        Assert.True((await Host.SendAsync(new InvokeMcpTool.Command(registered.Server.Id, echo.Id, Message), tenant)).IsSuccess);
    }

    [Fact]
    public async Task A_failed_update_leaves_the_server_its_url_its_credential_and_its_grant()
    {
        await using var secured = await StartAsync(token: "token-1");
        var tenant = TestEnvironment.NewTenant();
        var first = (await Host.SendAsync(new StoreCredential.Command("first", "bearer_token", Secret: "token-1"), tenant)).Value;
        var wrong = (await Host.SendAsync(new StoreCredential.Command("wrong", "bearer_token", Secret: "not-the-token"), tenant)).Value;
        var registered = await RegisterAsync(tenant, secured, first.Reference);

        var refused = await UpdateAsync(tenant, registered.Server.Id, new(CredentialRef: wrong.Reference));
        Assert.False(refused.IsSuccess);

        var metadata = await UpdateAsync(tenant, registered.Server.Id, new(Url: "http://169.254.169.254/mcp"));
        Assert.Equal("ssrf_blocked", metadata.Error?.Code);

        var server = (await Host.SendAsync(new GetMcpServer.Query(registered.Server.Id), tenant)).Value;
        Assert.Equal((secured.Endpoint.AbsoluteUri, first.Reference), (server.Url, server.CredentialRef));
        var grantedTo = await OwnerSql.ScalarAsync<string>(Host.ConnectionString,
            $"SELECT string_agg(credential_id::text, ',') FROM credential_grants WHERE tenant_id = '{tenant}' AND accessor_id = '{registered.Server.Id}'");
        Assert.Equal(first.Id.ToString(), grantedTo);
        var echo = registered.Tools.Single(t => t.Name == "echo");
        Assert.True((await Host.SendAsync(new InvokeMcpTool.Command(registered.Server.Id, echo.Id, Message), tenant)).IsSuccess);
        Assert.Equal(0L, await OwnerSql.AuditCountAsync(Host.ConnectionString, tenant, "mcp_servers.update"));
    }

    [Fact]
    public async Task Another_tenants_server_and_another_servers_url_are_refused()
    {
        await using var one = await StartAsync();
        await using var two = await StartAsync();
        var tenant = TestEnvironment.NewTenant();
        var first = await RegisterAsync(tenant, one);
        var second = (await Host.SendAsync(new RegisterMcpServer.Command("second", two.Endpoint.ToString()), tenant)).Value;

        var duplicate = await UpdateAsync(tenant, first.Server.Id, new(Url: two.Endpoint.ToString()));
        Assert.Equal(409, duplicate.Error?.Status);

        var foreign = await UpdateAsync(TestEnvironment.NewTenant(), second.Server.Id, new(Name: "mine now"));
        Assert.Equal(404, foreign.Error?.Status);

        var empty = await UpdateAsync(tenant, first.Server.Id, new());
        Assert.Equal("validation_failed", empty.Error?.Code);
        Assert.Equal("second", (await Host.SendAsync(new GetMcpServer.Query(second.Server.Id), tenant)).Value.Name);
    }
}
