using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Integrations.Common;
using Integrations.Tests.Support;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Tests.Integrations;

/// <summary>The HTTP surface of integrations.* and the cross-cutting HTTP behaviour, through the real host.</summary>
public sealed class IntegrationHttpTests(ApiFixture fixture) : IClassFixture<ApiFixture>
{
    private ApiFactory Api => fixture.Factory;

    private static async Task<JsonElement> JsonAsync(HttpResponseMessage response) =>
        JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;

    private static async Task<string> CodeAsync(HttpResponseMessage response)
    {
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        return (await JsonAsync(response)).GetProperty("code").GetString()!;
    }

    [Fact]
    public async Task Create_query_enable_disable_delete_and_see_each_change_in_the_audit_trail()
    {
        var client = await Api.ClientForAsync(TestEnvironment.NewTenant());

        var created = await client.PostAsJsonAsync("/integrations", new
        {
            name = "openai-main",
            provider = "openai",
            limits = new { requests_per_minute = 60 },
            allowed_models = new[] { "gpt-4o" },
        });
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var id = (await JsonAsync(created)).GetProperty("id").GetString();
        Assert.Equal($"/integrations/{id}", created.Headers.Location?.ToString());

        var list = await JsonAsync(await client.GetAsync("/integrations?provider=openai&name_prefix=openai&limit=10"));
        Assert.Equal(id, list.GetProperty("items")[0].GetProperty("id").GetString());
        Assert.Equal(JsonValueKind.Null, list.GetProperty("next_cursor").ValueKind);

        Assert.Equal("enabled", (await JsonAsync(await client.PostAsync($"/integrations/{id}/enable", null))).GetProperty("status").GetString());
        Assert.Equal("disabled", (await JsonAsync(await client.PostAsync($"/integrations/{id}/disable", null))).GetProperty("status").GetString());
        var patched = await client.PatchAsJsonAsync($"/integrations/{id}", new { name = "renamed" });
        Assert.Equal("renamed", (await JsonAsync(patched)).GetProperty("name").GetString());
        Assert.Equal(HttpStatusCode.NoContent, (await client.DeleteAsync($"/integrations/{id}")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync($"/integrations/{id}")).StatusCode);

        var audit = await JsonAsync(await client.GetAsync("/audit"));
        Assert.Equal(
            ["integrations.delete", "integrations.update", "integrations.disable", "integrations.enable", "integrations.create"],
            audit.GetProperty("items").EnumerateArray().Select(e => e.GetProperty("action").GetString()));
        Assert.True((await JsonAsync(await client.PostAsync("/audit/verify", null))).GetProperty("valid").GetBoolean());
    }

    [Fact]
    public async Task No_key_and_a_bad_key_are_401_problems()
    {
        var anonymous = Api.CreateClient();
        var none = await anonymous.GetAsync("/integrations");
        Assert.Equal(HttpStatusCode.Unauthorized, none.StatusCode);
        Assert.Equal("unauthenticated", await CodeAsync(none));

        foreach (var key in new[] { "garbage", "ik_00000000000000000000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" })
        {
            var request = new HttpRequestMessage(HttpMethod.Get, "/integrations");
            request.Headers.Authorization = new("Bearer", key);
            var response = await anonymous.SendAsync(request);
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
            Assert.Equal("unauthenticated", await CodeAsync(response));
        }
    }

    [Fact]
    public async Task A_key_with_a_tampered_secret_or_a_revoked_key_is_401()
    {
        var tenant = TestEnvironment.NewTenant();
        var key = await Api.KeyForAsync(tenant, Scopes.Read);
        var client = Api.CreateClient();

        async Task<HttpStatusCode> StatusWith(string k)
        {
            var request = new HttpRequestMessage(HttpMethod.Get, "/integrations");
            request.Headers.Add("X-Api-Key", k);
            return (await client.SendAsync(request)).StatusCode;
        }

        Assert.Equal(HttpStatusCode.OK, await StatusWith(key.Key));
        var tampered = key.Key[..^10] + (key.Key[^10] == 'A' ? 'B' : 'A') + key.Key[^9..];
        Assert.Equal(HttpStatusCode.Unauthorized, await StatusWith(tampered));

        await Api.Services.GetRequiredService<global::Integrations.Infrastructure.Security.ApiKeys>().RevokeAsync(key.Id, CancellationToken.None);
        Assert.Equal(HttpStatusCode.Unauthorized, await StatusWith(key.Key));
    }

    [Fact]
    public async Task A_missing_scope_is_403_forbidden()
    {
        var reader = await Api.ClientForAsync(TestEnvironment.NewTenant(), Scopes.Read);

        var response = await reader.PostAsJsonAsync("/integrations", new { name = "x", provider = "openai" });

        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
        Assert.Equal("forbidden", await CodeAsync(response));
    }

    [Fact]
    public async Task Another_tenants_integration_is_404_on_every_route()
    {
        var owner = await Api.ClientForAsync(TestEnvironment.NewTenant());
        var intruder = await Api.ClientForAsync(TestEnvironment.NewTenant());
        var id = (await JsonAsync(await owner.PostAsJsonAsync("/integrations", new { name = "mine", provider = "openai" }))).GetProperty("id").GetString();

        var attempts = new[]
        {
            await intruder.GetAsync($"/integrations/{id}"),
            await intruder.PatchAsJsonAsync($"/integrations/{id}", new { name = "stolen" }),
            await intruder.PostAsync($"/integrations/{id}/enable", null),
            await intruder.PostAsync($"/integrations/{id}/disable", null),
            await intruder.DeleteAsync($"/integrations/{id}"),
        };
        foreach (var response in attempts)
        {
            Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
            Assert.DoesNotContain("mine", await response.Content.ReadAsStringAsync());
        }
        Assert.Equal(0, (await JsonAsync(await intruder.GetAsync("/integrations"))).GetProperty("items").GetArrayLength());
        Assert.Equal("mine", (await JsonAsync(await owner.GetAsync($"/integrations/{id}"))).GetProperty("name").GetString());
    }

    [Fact]
    public async Task Validation_failures_are_400_with_snake_case_field_errors()
    {
        var client = await Api.ClientForAsync(TestEnvironment.NewTenant());

        var response = await client.PostAsJsonAsync("/integrations", new { name = "", provider = "nope", credential_ref = "sk-123", limits = new { tokens_per_month = -1 } });

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var problem = await JsonAsync(response);
        Assert.Equal("validation_failed", problem.GetProperty("code").GetString());
        var fields = problem.GetProperty("errors").EnumerateObject().Select(p => p.Name).Order();
        Assert.Equal(["credential_ref", "limits.tokens_per_month", "name", "provider"], fields);
    }

    [Theory]
    [InlineData("{\"name\": ")]
    [InlineData("[1,2,3]")]
    [InlineData("{\"name\": 5, \"provider\": \"openai\"}")]
    [InlineData("")]
    public async Task Malformed_json_is_400_without_internals(string body)
    {
        var client = await Api.ClientForAsync(TestEnvironment.NewTenant());

        var response = await client.PostAsync("/integrations", new StringContent(body, Encoding.UTF8, "application/json"));

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var text = await response.Content.ReadAsStringAsync();
        Assert.Equal("malformed_request", await CodeAsync(response));
        Assert.DoesNotContain("System.", text);
    }

    [Fact]
    public async Task Bad_query_parameters_are_400_problems()
    {
        var client = await Api.ClientForAsync(TestEnvironment.NewTenant());

        Assert.Equal("malformed_request", await CodeAsync(await client.GetAsync("/integrations?limit=abc")));
        Assert.Equal("validation_failed", await CodeAsync(await client.GetAsync("/integrations?limit=500")));
        Assert.Equal("validation_failed", await CodeAsync(await client.GetAsync("/integrations?cursor=zzz")));
    }

    [Fact]
    public async Task Bodies_over_one_mebibyte_are_413()
    {
        var client = await Api.ClientForAsync(TestEnvironment.NewTenant());
        var big = JsonSerializer.Serialize(new { name = new string('x', 1024 * 1024 + 10), provider = "openai" });

        var declared = await client.PostAsync("/integrations", new StringContent(big, Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, declared.StatusCode);
        Assert.Equal("payload_too_large", await CodeAsync(declared));

        var chunked = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes(big)));
        chunked.Headers.ContentType = new("application/json");
        var request = new HttpRequestMessage(HttpMethod.Post, "/integrations") { Content = chunked };
        request.Headers.TransferEncodingChunked = true;
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, (await client.SendAsync(request)).StatusCode);
    }

    [Fact]
    public async Task Unknown_routes_are_404_problems()
    {
        var client = await Api.ClientForAsync(TestEnvironment.NewTenant());
        var response = await client.GetAsync("/integrations/not-a-guid");
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Equal("not_found", await CodeAsync(response));
    }

    [Fact]
    public async Task An_unexpected_exception_is_a_500_with_trace_id_and_without_its_text()
    {
        await using var failing = Api.WithWebHostBuilder(b => b.ConfigureServices(s => s.AddSingleton<IStartupFilter, ThrowingRoute>()));
        var response = await failing.CreateClient().GetAsync("/boom");

        Assert.Equal(HttpStatusCode.InternalServerError, response.StatusCode);
        var text = await response.Content.ReadAsStringAsync();
        Assert.DoesNotContain("secret detail", text);
        Assert.DoesNotContain("InvalidOperationException", text);
        var problem = JsonDocument.Parse(text).RootElement;
        Assert.Equal("internal_error", problem.GetProperty("code").GetString());
        Assert.False(string.IsNullOrEmpty(problem.GetProperty("trace_id").GetString()));
    }

    private sealed class ThrowingRoute : IStartupFilter
    {
        public Action<IApplicationBuilder> Configure(Action<IApplicationBuilder> next) => app =>
        {
            next(app);
            app.Use((HttpContext context, RequestDelegate inner) => context.Request.Path == "/boom"
                ? throw new InvalidOperationException("secret detail")
                : inner(context));
        };
    }

    [Fact]
    public async Task Health_endpoints_answer()
    {
        var client = Api.CreateClient();
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/health/live")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/health/ready")).StatusCode);
    }

    [Fact]
    public async Task Every_operation_is_in_the_openapi_document_under_its_name_and_swagger_ui_is_served()
    {
        var client = Api.CreateClient();
        var document = await JsonAsync(await client.GetAsync("/openapi/v1.json"));
        var operationIds = document.GetProperty("paths").EnumerateObject()
            .SelectMany(path => path.Value.EnumerateObject())
            .Where(op => op.Value.ValueKind == JsonValueKind.Object && op.Value.TryGetProperty("operationId", out _))
            .Select(op => op.Value.GetProperty("operationId").GetString())
            .ToHashSet();

        var operations = typeof(IOperation).Assembly.GetTypes()
            .Where(t => t.IsClass && typeof(IOperation).IsAssignableFrom(t))
            .Select(t => (string)t.GetProperty(nameof(IOperation.Operation))!.GetValue(null)!);
        Assert.All(operations, operation => Assert.Contains(operation, operationIds));

        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/docs/index.html")).StatusCode);
    }
}
