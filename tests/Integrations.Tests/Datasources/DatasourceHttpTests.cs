using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Integrations.Common;
using Integrations.Tests.Support;

namespace Integrations.Tests.Datasources;

/// <summary>The HTTP host plus a seeded target database.</summary>
public sealed class DatasourceApiFixture : IAsyncLifetime
{
    public ApiFactory Api { get; private set; } = null!;

    public TargetDatabase Target { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Target = await TargetDatabase.CreateAsync();
        Api = await ApiFactory.StartAsync();
        _ = Api.Server;
    }

    public async Task DisposeAsync()
    {
        await Api.DisposeAsync();
        await Target.DisposeAsync();
    }
}

/// <summary>datasources.* over HTTP, the way a console or an agent uses them (and the way the README shows with curl).</summary>
public sealed class DatasourceHttpTests(DatasourceApiFixture fixture) : IClassFixture<DatasourceApiFixture>
{
    private TargetDatabase Target => fixture.Target;

    private static async Task<JsonElement> JsonAsync(HttpResponseMessage response) =>
        JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;

    private static async Task<(HttpStatusCode Status, string Code)> ProblemAsync(HttpResponseMessage response)
    {
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        return (response.StatusCode, (await JsonAsync(response)).GetProperty("code").GetString()!);
    }

    /// <summary>Stores the password (POST /credentials) and registers the seeded database with the reference; answers with the datasource id.</summary>
    private async Task<string> RegisterAsync(HttpClient client, string name = "warehouse")
    {
        var stored = await client.PostAsJsonAsync("/credentials", new { name = $"pg-{Guid.NewGuid():N}", type = "basic_auth", username = Target.Role, password = Target.Password });
        Assert.Equal(HttpStatusCode.Created, stored.StatusCode);
        var reference = (await JsonAsync(stored)).GetProperty("reference").GetString();

        var registered = await client.PostAsJsonAsync("/integrations/datasources", new
        {
            name,
            host = Target.Host,
            port = Target.Port,
            database = Target.Database,
            username = Target.Role,
            credential_ref = reference,
            tls_mode = "disable",
            row_limit = 100,
            statement_timeout_ms = 2000,
        });
        Assert.Equal(HttpStatusCode.Created, registered.StatusCode);
        var id = (await JsonAsync(registered)).GetProperty("id").GetString()!;
        Assert.Equal($"/integrations/datasources/{id}", registered.Headers.Location?.ToString());
        return id;
    }

    [Fact]
    public async Task Register_test_define_query_list_and_delete_over_http()
    {
        var client = await fixture.Api.ClientForAsync(TestEnvironment.NewTenant());
        var id = await RegisterAsync(client);

        var tested = await JsonAsync(await client.PostAsync($"/integrations/datasources/{id}/test", null));
        Assert.Equal("active", tested.GetProperty("status").GetString());

        var defined = await client.PostAsJsonAsync($"/integrations/datasources/{id}/queries", new
        {
            name = "customers-by-tier",
            sql = "SELECT id, name, balance FROM customers WHERE tier = @tier ORDER BY id LIMIT @n",
            parameters = new[] { new { name = "tier", type = "text" }, new { name = "n", type = "integer" } },
            description = "Customers of one tier",
        });
        Assert.Equal(HttpStatusCode.Created, defined.StatusCode);
        Assert.Equal($"/integrations/datasources/{id}/queries/customers-by-tier", defined.Headers.Location?.ToString());
        Assert.Equal("numeric(12, 2)", (await JsonAsync(defined)).GetProperty("columns")[2].GetProperty("type").GetString());

        var ran = await client.PostAsJsonAsync($"/integrations/datasources/{id}/queries/customers-by-tier",
            new { parameters = new { tier = "pro", n = 2 }, sql = "DELETE FROM t" });
        Assert.Equal(HttpStatusCode.OK, ran.StatusCode);
        var result = await JsonAsync(ran);
        Assert.Equal(["id", "name", "balance"], result.GetProperty("columns").EnumerateArray().Select(c => c.GetProperty("name").GetString()));
        Assert.Equal("[[1,\"customer 1\",10.50],[4,\"customer 4\",42.00]]", result.GetProperty("rows").GetRawText());
        Assert.Equal(2, result.GetProperty("row_count").GetInt32());
        Assert.False(result.GetProperty("truncated").GetBoolean());
        Assert.Equal(JsonValueKind.Null, result.GetProperty("truncated_reason").ValueKind);
        Assert.Equal(3L, await Target.CountAsync("t"));

        var listed = await JsonAsync(await client.GetAsync($"/integrations/datasources/{id}/queries?limit=10"));
        Assert.Equal("customers-by-tier", listed.GetProperty("items")[0].GetProperty("name").GetString());
        var datasources = await JsonAsync(await client.GetAsync("/integrations/datasources?kind=postgres&status=active"));
        Assert.Equal(id, datasources.GetProperty("items")[0].GetProperty("id").GetString());
        Assert.Equal(JsonValueKind.Null, datasources.GetProperty("next_cursor").ValueKind);
        Assert.Equal(id, (await JsonAsync(await client.GetAsync($"/integrations/datasources/{id}"))).GetProperty("id").GetString());

        var disabled = await client.PatchAsJsonAsync($"/integrations/datasources/{id}/queries/customers-by-tier", new { enabled = false });
        Assert.False((await JsonAsync(disabled)).GetProperty("enabled").GetBoolean());
        Assert.Equal(HttpStatusCode.NoContent, (await client.DeleteAsync($"/integrations/datasources/{id}/queries/customers-by-tier")).StatusCode);
        Assert.Equal(HttpStatusCode.NoContent, (await client.DeleteAsync($"/integrations/datasources/{id}")).StatusCode);
        Assert.Equal((HttpStatusCode.NotFound, "not_found"), await ProblemAsync(await client.GetAsync($"/integrations/datasources/{id}")));

        var actions = (await JsonAsync(await client.GetAsync("/audit?limit=200"))).GetProperty("items").EnumerateArray()
            .Select(e => e.GetProperty("action").GetString()).Where(a => a!.StartsWith("datasource")).ToList();
        Assert.Equal(
            ["datasources.delete", "datasources.delete_query", "datasources.update_query", "datasource.query.completed",
             "datasource.query.started", "datasource.query.allowed", "datasource.query.requested", "datasources.define_query", "datasources.test", "datasources.register"],
            actions);
        Assert.True((await JsonAsync(await client.PostAsync("/audit/verify", null))).GetProperty("valid").GetBoolean());
    }

    [Fact]
    public async Task Failures_are_problem_details_with_stable_codes()
    {
        var client = await fixture.Api.ClientForAsync(TestEnvironment.NewTenant());
        var id = await RegisterAsync(client);
        async Task DefineAsync(object body) =>
            Assert.Equal(HttpStatusCode.Created, (await client.PostAsJsonAsync($"/integrations/datasources/{id}/queries", body)).StatusCode);
        await DefineAsync(new { name = "slow", sql = "SELECT pg_sleep(@s)", parameters = new[] { new { name = "s", type = "double" } }, timeout_ms = 200 });
        await DefineAsync(new { name = "once", sql = "SELECT 1 AS one", rate_limit_per_minute = 1 });
        await DefineAsync(new { name = "by-id", sql = "SELECT note FROM t WHERE id = @id", parameters = new[] { new { name = "id", type = "integer" } } });
        await DefineAsync(new { name = "one-huge-row", sql = "SELECT repeat('x', 5 * 1024 * 1024) AS payload" });

        var refused = await client.PostAsJsonAsync($"/integrations/datasources/{id}/queries", new { name = "evil", sql = "SELECT 1; DROP TABLE t" });
        Assert.Equal((HttpStatusCode.BadRequest, "validation_failed"), await ProblemAsync(refused));
        Assert.Contains("one statement", (await JsonAsync(refused)).GetProperty("errors").GetProperty("sql")[0].GetString());

        var timeout = await client.PostAsJsonAsync($"/integrations/datasources/{id}/queries/slow", new { parameters = new { s = 5 } });
        Assert.Equal((HttpStatusCode.GatewayTimeout, "upstream_timeout"), await ProblemAsync(timeout));

        while (DateTime.UtcNow.Second > 50) await Task.Delay(500);
        Assert.Equal(HttpStatusCode.OK, (await client.PostAsync($"/integrations/datasources/{id}/queries/once", null)).StatusCode);
        var limited = await client.PostAsync($"/integrations/datasources/{id}/queries/once", null);
        Assert.Equal(((HttpStatusCode)429, "rate_limited"), await ProblemAsync(limited));
        Assert.InRange(int.Parse(limited.Headers.GetValues("Retry-After").Single()), 1, 60);

        var badParameter = await client.PostAsJsonAsync($"/integrations/datasources/{id}/queries/by-id", new { parameters = new { id = "1 OR 1=1" } });
        Assert.Equal((HttpStatusCode.BadRequest, "validation_failed"), await ProblemAsync(badParameter));
        Assert.True((await JsonAsync(badParameter)).GetProperty("errors").TryGetProperty("parameters.id", out _));

        Assert.Equal((HttpStatusCode.NotFound, "not_found"),
            await ProblemAsync(await client.PostAsync($"/integrations/datasources/{id}/queries/no-such-template", null)));

        var huge = await client.PostAsync($"/integrations/datasources/{id}/queries/one-huge-row", null);
        Assert.Equal((HttpStatusCode.BadGateway, "upstream_error"), await ProblemAsync(huge));
        Assert.Equal(4 * 1024 * 1024, (await JsonAsync(huge)).GetProperty("max_result_bytes").GetInt64());
    }

    [Fact]
    public async Task A_blocked_host_is_422_ssrf_blocked()
    {
        var tenant = TestEnvironment.NewTenant();
        var client = await fixture.Api.ClientForAsync(tenant);
        var stored = await client.PostAsJsonAsync("/credentials", new { name = "pg", type = "basic_auth", username = "u", password = "p-123456" });
        var reference = (await JsonAsync(stored)).GetProperty("reference").GetString();

        var blocked = await client.PostAsJsonAsync("/integrations/datasources", new
        {
            name = "metadata",
            host = "169.254.169.254",
            database = "x",
            username = "x",
            credential_ref = reference,
            tls_mode = "require",
        });

        Assert.Equal(((HttpStatusCode)422, "ssrf_blocked"), await ProblemAsync(blocked));
    }

    [Fact]
    public async Task Running_a_query_needs_tools_invoke_and_another_tenant_sees_nothing()
    {
        var owner = TestEnvironment.NewTenant();
        var client = await fixture.Api.ClientForAsync(owner);
        var id = await RegisterAsync(client);
        Assert.Equal(HttpStatusCode.Created, (await client.PostAsJsonAsync($"/integrations/datasources/{id}/queries", new { name = "q", sql = "SELECT 1 AS one" })).StatusCode);

        var readWrite = await fixture.Api.ClientForAsync(owner, Scopes.Read, Scopes.Write);
        Assert.Equal((HttpStatusCode.Forbidden, "forbidden"), await ProblemAsync(await readWrite.PostAsync($"/integrations/datasources/{id}/queries/q", null)));
        var invoker = await fixture.Api.ClientForAsync(owner, Scopes.Invoke);
        Assert.Equal(HttpStatusCode.OK, (await invoker.PostAsync($"/integrations/datasources/{id}/queries/q", null)).StatusCode);
        Assert.Equal((HttpStatusCode.Forbidden, "forbidden"),
            await ProblemAsync(await invoker.PostAsJsonAsync($"/integrations/datasources/{id}/queries", new { name = "q2", sql = "SELECT 2" })));

        var intruder = await fixture.Api.ClientForAsync(TestEnvironment.NewTenant());
        foreach (var response in new[]
                 {
                     await intruder.GetAsync($"/integrations/datasources/{id}"),
                     await intruder.PostAsync($"/integrations/datasources/{id}/test", null),
                     await intruder.GetAsync($"/integrations/datasources/{id}/queries"),
                     await intruder.PostAsJsonAsync($"/integrations/datasources/{id}/queries", new { name = "x", sql = "SELECT 1" }),
                     await intruder.PostAsync($"/integrations/datasources/{id}/queries/q", null),
                     await intruder.PatchAsJsonAsync($"/integrations/datasources/{id}/queries/q", new { enabled = false }),
                     await intruder.DeleteAsync($"/integrations/datasources/{id}/queries/q"),
                     await intruder.DeleteAsync($"/integrations/datasources/{id}"),
                 })
        {
            Assert.Equal((HttpStatusCode.NotFound, "not_found"), await ProblemAsync(response));
        }
        Assert.Empty((await JsonAsync(await intruder.GetAsync("/integrations/datasources"))).GetProperty("items").EnumerateArray());
    }
}
