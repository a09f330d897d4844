using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Integrations.Infrastructure.Database;
using Integrations.Tests.Support;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Tests.Http;

public sealed class IdempotencyKeyTests(ApiFixture fixture) : IClassFixture<ApiFixture>
{
    private ApiFactory Api => fixture.Factory;

    private static HttpRequestMessage Post(string path, object body, string? key)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = JsonContent.Create(body) };
        if (key is not null) request.Headers.Add("Idempotency-Key", key);
        return request;
    }

    private static async Task<JsonElement> JsonAsync(HttpResponseMessage response) =>
        JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;

    [Fact]
    public async Task A_retried_create_with_the_same_key_gets_the_first_answer_and_creates_nothing_twice()
    {
        var tenant = TestEnvironment.NewTenant();
        var client = await Api.ClientForAsync(tenant);
        var key = Guid.NewGuid().ToString();

        var first = await client.SendAsync(Post("/integrations", new { name = "once", provider = "openai" }, key));
        var retry = await client.SendAsync(Post("/integrations", new { name = "once", provider = "openai" }, key));

        Assert.Equal((HttpStatusCode.Created, HttpStatusCode.Created), (first.StatusCode, retry.StatusCode));
        Assert.Equal((await JsonAsync(first)).GetProperty("id").GetString(), (await JsonAsync(retry)).GetProperty("id").GetString());
        Assert.Equal(first.Headers.Location, retry.Headers.Location);
        Assert.Equal("true", retry.Headers.GetValues("Idempotent-Replayed").Single());
        Assert.False(first.Headers.Contains("Idempotent-Replayed"));
        Assert.Equal(1L, await OwnerSql.ScalarAsync<long>(Api.ConnectionString, "SELECT count(*) FROM cus_integrations WHERE tenant_id = @tenant", new { tenant }));
        Assert.Equal(1L, await OwnerSql.AuditCountAsync(Api.ConnectionString, tenant, "integrations.create"));

        // Without the header, the same request is a new one (and here a name conflict).
        Assert.Equal(HttpStatusCode.Conflict, (await client.SendAsync(Post("/integrations", new { name = "once", provider = "openai" }, null))).StatusCode);
    }

    [Fact]
    public async Task The_same_key_for_another_request_is_409_and_keys_are_per_tenant_and_checked()
    {
        var client = await Api.ClientForAsync(TestEnvironment.NewTenant());
        var key = Guid.NewGuid().ToString();
        Assert.Equal(HttpStatusCode.Created, (await client.SendAsync(Post("/integrations", new { name = "a", provider = "openai" }, key))).StatusCode);

        var reused = await client.SendAsync(Post("/integrations", new { name = "b", provider = "openai" }, key));
        Assert.Equal((HttpStatusCode.Conflict, "idempotency_key_reused"), (reused.StatusCode, (await JsonAsync(reused)).GetProperty("code").GetString()));

        var other = await Api.ClientForAsync(TestEnvironment.NewTenant());
        Assert.Equal(HttpStatusCode.Created, (await other.SendAsync(Post("/integrations", new { name = "b", provider = "openai" }, key))).StatusCode);

        var bad = await client.SendAsync(Post("/integrations", new { name = "c", provider = "openai" }, "has space"));
        Assert.Equal((HttpStatusCode.BadRequest, "validation_failed"), (bad.StatusCode, (await JsonAsync(bad)).GetProperty("code").GetString()));
    }

    [Fact]
    public async Task A_retried_tool_call_with_the_same_key_is_never_a_second_call()
    {
        await using var mcp = new TestMcpServer();
        await mcp.StartAsync();
        var client = await Api.ClientForAsync(TestEnvironment.NewTenant());
        var registered = await JsonAsync(await client.PostAsJsonAsync("/integrations/mcp-servers", new { name = "test", url = mcp.Endpoint.ToString() }));
        var serverId = registered.GetProperty("server").GetProperty("id").GetString();
        var echo = registered.GetProperty("tools").EnumerateArray().Single(t => t.GetProperty("name").GetString() == "echo").GetProperty("id").GetString();
        var path = $"/integrations/mcp-servers/{serverId}/tools/{echo}/invoke";
        var key = Guid.NewGuid().ToString();

        var first = await client.SendAsync(Post(path, new { arguments = new { message = "pay once" } }, key));
        var retry = await client.SendAsync(Post(path, new { arguments = new { message = "pay once" } }, key));

        Assert.Equal((HttpStatusCode.OK, HttpStatusCode.OK), (first.StatusCode, retry.StatusCode));
        Assert.Equal((await JsonAsync(first)).GetProperty("invocation_id").GetString(), (await JsonAsync(retry)).GetProperty("invocation_id").GetString());
        Assert.Equal(1, mcp.ToolCalls);
    }

    [Fact]
    public async Task Keys_older_than_a_day_are_pruned_and_a_key_past_its_day_runs_again()
    {
        var tenant = TestEnvironment.NewTenant();
        var client = await Api.ClientForAsync(tenant);
        var key = Guid.NewGuid().ToString();
        var first = await JsonAsync(await client.SendAsync(Post("/integrations", new { name = "day-one", provider = "openai" }, key)));
        await OwnerSql.ExecuteAsync(Api.ConnectionString, "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE tenant_id = @tenant", new { tenant });

        // Past its day the key is free again: the same request runs anew (here: the name now exists).
        Assert.Equal(HttpStatusCode.Conflict, (await client.SendAsync(Post("/integrations", new { name = "day-one", provider = "openai" }, key))).StatusCode);
        Assert.NotNull(first.GetProperty("id").GetString());

        await OwnerSql.ExecuteAsync(Api.ConnectionString, "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE tenant_id = @tenant", new { tenant });
        var pruned = (await Api.Services.GetRequiredService<ExpiredRowsPruning>().PruneOnceAsync(CancellationToken.None)).IdempotencyKeys;
        Assert.True(pruned >= 1);
        Assert.Equal(0L, await OwnerSql.ScalarAsync<long>(Api.ConnectionString, "SELECT count(*) FROM idempotency_keys WHERE tenant_id = @tenant", new { tenant }));
    }
}
