using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Integrations.Common;
using Integrations.Tests.LlmGateway;
using Integrations.Tests.Support;

namespace Integrations.Tests.Spend;

public sealed class KeyLimitsTests(LlmGatewayFixture fixture) : IClassFixture<LlmGatewayFixture>
{
    private static object Chat(string model) => new { model, messages = new[] { new { role = "user", content = "hi" } } };

    private static async Task<JsonElement> JsonAsync(HttpResponseMessage response) =>
        JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;

    private HttpClient ClientWith(string key)
    {
        var client = fixture.Factory.CreateClient();
        client.DefaultRequestHeaders.Authorization = new("Bearer", key);
        return client;
    }

    private static async Task SetLimitsAsync(LlmGatewayFixture.Tenant tenant, Guid keyId, object body)
    {
        var set = await tenant.Admin.PutAsJsonAsync($"/api-keys/{keyId}/limits", body);
        Assert.True(set.IsSuccessStatusCode, await set.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task A_spent_key_budget_refuses_that_keys_calls_while_another_key_goes_on_and_the_session_shows_what_is_left()
    {
        var tenant = await fixture.TenantAsync();
        var key = await fixture.Factory.KeyForAsync(tenant.Id, Scopes.LlmInvoke, Scopes.Write, Scopes.Read);
        await SetLimitsAsync(tenant, key.Id, new { limits = new { budget_cents_per_month = 5, tokens_per_month = 1_000_000 } });
        using var http = ClientWith(key.Key);

        Assert.Equal(HttpStatusCode.OK, (await http.PostAsJsonAsync("/v1/chat/completions", Chat("llm/gpt-4o-mini"))).StatusCode);
        var before = (await JsonAsync(await http.GetAsync("/session"))).GetProperty("spend");
        Assert.Equal(5, before.GetProperty("budget_cents_per_month").GetInt64());
        Assert.InRange(before.GetProperty("budget_cents_remaining").GetDecimal(), 4.9m, 5m);
        Assert.True(before.GetProperty("tokens_this_month").GetInt64() > 0);

        // Usage the key reports from outside the gateway counts against its budget too.
        var ingested = await http.PostAsJsonAsync("/telemetry/llm-usage", new
        {
            records = new[] { new { idempotency_id = "outside-1", provider = "openai", model = "gpt-4o", cost_cents = 5, started_at = DateTimeOffset.UtcNow } },
        });
        Assert.Equal(1, (await JsonAsync(ingested)).GetProperty("stored").GetInt32());

        var refused = await http.PostAsJsonAsync("/v1/chat/completions", Chat("llm/gpt-4o-mini"));
        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        var error = (await JsonAsync(refused)).GetProperty("error");
        Assert.Equal("key_budget_exceeded", error.GetProperty("code").GetString());
        Assert.NotNull(refused.Headers.RetryAfter);
        var after = (await JsonAsync(await http.GetAsync("/session"))).GetProperty("spend");
        Assert.Equal(0m, after.GetProperty("budget_cents_remaining").GetDecimal());

        // The integration has no budget and the tenant's other key none of its own: it goes on.
        using var other = tenant.Http();
        Assert.Equal(HttpStatusCode.OK, (await other.PostAsJsonAsync("/v1/chat/completions", Chat("llm/gpt-4o-mini"))).StatusCode);
    }

    [Fact]
    public async Task A_key_limited_to_a_model_is_403_for_another_and_the_stricter_of_the_keys_and_the_integrations_rpm_wins()
    {
        var tenant = await fixture.TenantAsync(limits: new { requests_per_minute = 100 });
        await SetLimitsAsync(tenant, tenant.LlmKeyId, new { limits = new { requests_per_minute = 1 }, allowed_models = new[] { "gpt-4o-mini" } });
        using var http = tenant.Http();

        var otherModel = await http.PostAsJsonAsync("/v1/chat/completions", Chat("llm/gpt-4o"));
        Assert.Equal(HttpStatusCode.Forbidden, otherModel.StatusCode);
        Assert.Equal("model_not_allowed_for_key", (await JsonAsync(otherModel)).GetProperty("error").GetProperty("rule").GetString());
        Assert.Equal(HttpStatusCode.OK, (await http.PostAsJsonAsync("/v1/chat/completions", Chat("llm/gpt-4o-mini"))).StatusCode);
        var limited = await http.PostAsJsonAsync("/v1/chat/completions", Chat("llm/gpt-4o-mini"));
        Assert.Equal(HttpStatusCode.TooManyRequests, limited.StatusCode);
        Assert.Equal("key_rate_limit", (await JsonAsync(limited)).GetProperty("error").GetProperty("rule").GetString());

        // Here the integration is the stricter: its limit refuses while the key's would allow.
        var strictIntegration = await fixture.TenantAsync(limits: new { requests_per_minute = 1 });
        await SetLimitsAsync(strictIntegration, strictIntegration.LlmKeyId, new { limits = new { requests_per_minute = 100 } });
        using var second = strictIntegration.Http();
        Assert.Equal(HttpStatusCode.OK, (await second.PostAsJsonAsync("/v1/chat/completions", Chat("llm/gpt-4o-mini"))).StatusCode);
        var byIntegration = await second.PostAsJsonAsync("/v1/chat/completions", Chat("llm/gpt-4o-mini"));
        Assert.Equal("llm_rate_limit", (await JsonAsync(byIntegration)).GetProperty("error").GetProperty("rule").GetString());
    }

    [Fact]
    public async Task Key_limits_are_set_by_an_admin_of_the_keys_tenant_only_and_checked()
    {
        var tenant = await fixture.TenantAsync();
        var stranger = await fixture.TenantAsync("stranger");

        var negative = await tenant.Admin.PutAsJsonAsync($"/api-keys/{tenant.LlmKeyId}/limits", new { limits = new { budget_cents_per_month = -1 } });
        var across = await stranger.Admin.PutAsJsonAsync($"/api-keys/{tenant.LlmKeyId}/limits", new { limits = new { budget_cents_per_month = 0 } });
        var reader = await fixture.Factory.ClientForAsync(tenant.Id, Scopes.Read);
        var notAdmin = await reader.PutAsJsonAsync($"/api-keys/{tenant.LlmKeyId}/limits", new { limits = new { budget_cents_per_month = 0 } });
        var created = await JsonAsync(await tenant.Admin.PostAsJsonAsync("/api-keys", new
        {
            name = "capped",
            scopes = new[] { Scopes.LlmInvoke },
            limits = new { tokens_per_month = 10 },
            allowed_models = new[] { "gpt-4o-mini" },
        }));

        Assert.Equal(HttpStatusCode.BadRequest, negative.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, across.StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, notAdmin.StatusCode);
        Assert.Equal(10, created.GetProperty("api_key").GetProperty("limits").GetProperty("tokens_per_month").GetInt64());
        Assert.Equal(["gpt-4o-mini"], created.GetProperty("api_key").GetProperty("allowed_models").EnumerateArray().Select(m => m.GetString()));
        var listed = await JsonAsync(await tenant.Admin.GetAsync("/api-keys"));
        Assert.All(listed.GetProperty("items").EnumerateArray().Where(k => k.GetProperty("id").GetGuid() == tenant.LlmKeyId),
            k => Assert.Equal(JsonValueKind.Null, k.GetProperty("limits").GetProperty("budget_cents_per_month").ValueKind));
    }
}
