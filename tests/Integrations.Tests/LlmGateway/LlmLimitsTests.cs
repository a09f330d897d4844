using System.ClientModel;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Integrations.Common;
using Integrations.Features.LlmGateway;
using Integrations.Tests.Support;
using OpenAI.Chat;

namespace Integrations.Tests.LlmGateway;

/// <summary>The gateway's rules, as attacks and limits: routing across tenants, allowed models, rpm, budgets, scopes.</summary>
public sealed class LlmLimitsTests(LlmGatewayFixture fixture) : IClassFixture<LlmGatewayFixture>
{
    private static object Chat(string model) => new { model, messages = new[] { new { role = "user", content = "hi" } } };

    private static async Task<JsonElement> ErrorOf(HttpResponseMessage response) =>
        (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("error");

    [Fact]
    public async Task The_call_after_the_requests_per_minute_limit_is_429_with_retry_after_and_a_denied_row()
    {
        var tenant = await fixture.TenantAsync(limits: new { requests_per_minute = 2 });
        var chat = tenant.OpenAi().GetChatClient("llm/gpt-4o-mini");
        await chat.CompleteChatAsync([new UserChatMessage("1")]);
        await chat.CompleteChatAsync([new UserChatMessage("2")]);

        var refused = await Assert.ThrowsAsync<ClientResultException>(() => chat.CompleteChatAsync([new UserChatMessage("3")]));

        Assert.Equal(429, refused.Status);
        Assert.Equal("llm_rate_limit", JsonDocument.Parse(refused.GetRawResponse()!.Content.ToString()).RootElement.GetProperty("error").GetProperty("rule").GetString());
        var retryAfter = refused.GetRawResponse()!.Headers.TryGetValue("Retry-After", out var seconds) ? int.Parse(seconds!) : 0;
        Assert.InRange(retryAfter, 1, 60);
        var rows = await tenant.UsageAsync();
        Assert.Equal(["completed", "completed", "denied"], rows.Select(r => r.Status));
        Assert.Equal("rate_limited", rows[2].ErrorCode);
        Assert.Equal(["llm.request.requested", "llm.request.denied"], await tenant.EventsAsync(rows[2].Id));
        Assert.Equal(2, fixture.Provider.Calls.Count(c => c.Authorization == $"Bearer {tenant.Secret}"));
    }

    [Fact]
    public async Task The_requests_per_minute_limit_holds_across_two_replicas()
    {
        var tenant = await fixture.TenantAsync(limits: new { requests_per_minute = 2 });
        await using var replica = ApiFactory.StartOn(fixture.ConnectionString);
        using var a = tenant.Http();
        using var b = tenant.Http(replica);

        Assert.Equal(HttpStatusCode.OK, (await a.PostAsJsonAsync("/v1/chat/completions", Chat("llm/gpt-4o-mini"))).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await b.PostAsJsonAsync("/v1/chat/completions", Chat("llm/gpt-4o-mini"))).StatusCode);
        var refusedA = await a.PostAsJsonAsync("/v1/chat/completions", Chat("llm/gpt-4o-mini"));
        var refusedB = await b.PostAsJsonAsync("/v1/chat/completions", Chat("llm/gpt-4o-mini"));

        foreach (var refused in new[] { refusedA, refusedB })
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
            Assert.NotNull(refused.Headers.RetryAfter?.Delta);
        }
        Assert.Equal(2, fixture.Provider.Calls.Count(c => c.Authorization == $"Bearer {tenant.Secret}"));
    }

    [Fact]
    public async Task A_spent_token_limit_or_budget_is_refused_with_the_reset_time_and_last_months_usage_does_not_count()
    {
        var tenant = await fixture.TenantAsync(limits: new { tokens_per_month = 1000, budget_cents_per_month = 5 });
        var budgetOnly = await tenant.IntegrationAsync("budget", new { budget_cents_per_month = 5 });
        using var http = tenant.Http();

        // Last month's spending is over both limits: this month starts clean.
        await UsageAsync(tenant, tenant.IntegrationId, "date_trunc('month', now() AT TIME ZONE 'UTC') - interval '1 month'", 5000, 900);
        Assert.Equal(HttpStatusCode.OK, (await http.PostAsJsonAsync("/v1/chat/completions", Chat("llm/gpt-4o-mini"))).StatusCode);

        await UsageAsync(tenant, tenant.IntegrationId, "date_trunc('month', now() AT TIME ZONE 'UTC')", 1000, 0);
        await UsageAsync(tenant, budgetOnly, "date_trunc('month', now() AT TIME ZONE 'UTC')", 10, 5);
        var tokens = await http.PostAsJsonAsync("/v1/chat/completions", Chat("llm/gpt-4o-mini"));
        var budget = await http.PostAsJsonAsync("/v1/chat/completions", Chat("budget/gpt-4o-mini"));

        var nextMonth = LlmCall.NextMonth(DateTimeOffset.UtcNow);
        foreach (var (response, code) in new[] { (tokens, "token_limit_exceeded"), (budget, "budget_exceeded") })
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, response.StatusCode);
            var error = await ErrorOf(response);
            Assert.Equal(code, error.GetProperty("code").GetString());
            Assert.Equal(nextMonth, error.GetProperty("reset_at").GetDateTimeOffset());
            Assert.InRange(response.Headers.RetryAfter!.Delta!.Value, nextMonth - DateTimeOffset.UtcNow - TimeSpan.FromMinutes(1), nextMonth - DateTimeOffset.UtcNow + TimeSpan.FromMinutes(1));
        }
        Assert.Equal(1, fixture.Provider.Calls.Count(c => c.Authorization == $"Bearer {tenant.Secret}"));
        Assert.Equal(["completed", "denied", "denied"], (await tenant.UsageAsync()).Select(r => r.Status));
    }

    [Fact]
    public async Task A_model_the_integration_does_not_allow_is_403()
    {
        var tenant = await fixture.TenantAsync(allowedModels: ["gpt-4o-mini"]);
        using var http = tenant.Http();

        var response = await http.PostAsJsonAsync("/v1/chat/completions", Chat("llm/gpt-4o"));

        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
        var error = await ErrorOf(response);
        Assert.Equal(("policy_denied", "model_not_allowed", "permission_error"),
            (error.GetProperty("code").GetString(), error.GetProperty("rule").GetString(), error.GetProperty("type").GetString()));
        Assert.DoesNotContain(fixture.Provider.Calls, c => c.Authorization == $"Bearer {tenant.Secret}");
        Assert.Equal(HttpStatusCode.OK, (await http.PostAsJsonAsync("/v1/chat/completions", Chat("gpt-4o-mini"))).StatusCode); // plain, via allowed_models
    }

    [Fact]
    public async Task The_tenants_deny_list_refuses_a_model_on_one_integration_or_on_all()
    {
        var tenant = await fixture.TenantAsync();
        var policy = await tenant.Admin.PutAsJsonAsync("/policies/tools", new { deny_list = new[] { "llm/gpt-4o", "o3" } });
        Assert.True(policy.IsSuccessStatusCode, await policy.Content.ReadAsStringAsync());
        using var http = tenant.Http();

        foreach (var model in new[] { "llm/gpt-4o", "llm/o3" })
        {
            var response = await http.PostAsJsonAsync("/v1/chat/completions", Chat(model));
            Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
            Assert.Equal("deny_list", (await ErrorOf(response)).GetProperty("rule").GetString());
        }
        Assert.Equal(HttpStatusCode.OK, (await http.PostAsJsonAsync("/v1/chat/completions", Chat("llm/gpt-4o-mini"))).StatusCode);
    }

    [Fact]
    public async Task A_disabled_integration_is_403()
    {
        var tenant = await fixture.TenantAsync(enable: false);
        using var http = tenant.Http();

        var response = await http.PostAsJsonAsync("/v1/chat/completions", Chat("llm/gpt-4o-mini"));

        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
        Assert.Equal("integration_disabled", (await ErrorOf(response)).GetProperty("rule").GetString());
        Assert.DoesNotContain(fixture.Provider.Calls, c => c.Authorization == $"Bearer {tenant.Secret}");
    }

    [Fact]
    public async Task Another_tenants_integration_is_never_routable_by_name_model_or_pin()
    {
        var victim = await fixture.TenantAsync(name: "shared-name", allowedModels: ["victim-model"]);
        var attacker = await fixture.TenantAsync(name: "mine");
        using var http = attacker.Http();

        var byName = await http.PostAsJsonAsync("/v1/chat/completions", Chat("shared-name/victim-model"));
        var byModel = await http.PostAsJsonAsync("/v1/chat/completions", Chat("victim-model"));
        using var pinned = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = JsonContent.Create(Chat("victim-model")) };
        pinned.Headers.Add(InvokeLlm.IntegrationHeader, victim.IntegrationId.ToString());
        var byPin = await http.SendAsync(pinned);

        foreach (var response in new[] { byName, byModel, byPin })
        {
            Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
            Assert.Equal("not_found", (await ErrorOf(response)).GetProperty("code").GetString());
        }
        Assert.DoesNotContain(fixture.Provider.Calls, c => c.Authorization == $"Bearer {victim.Secret}");
        Assert.Empty(await victim.UsageAsync());
        var models = await (await http.GetAsync("/v1/models")).Content.ReadFromJsonAsync<JsonElement>();
        Assert.DoesNotContain("victim-model", models.GetRawText(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_plain_model_two_integrations_allow_is_400_naming_both_until_one_is_pinned()
    {
        var tenant = await fixture.TenantAsync(name: "first", allowedModels: ["gpt-4o-mini"]);
        await tenant.IntegrationAsync("second", allowedModels: ["gpt-4o-mini"]);
        using var http = tenant.Http();

        var ambiguous = await http.PostAsJsonAsync("/v1/chat/completions", Chat("gpt-4o-mini"));
        Assert.Equal(HttpStatusCode.BadRequest, ambiguous.StatusCode);
        var error = await ErrorOf(ambiguous);
        Assert.Equal("model_ambiguous", error.GetProperty("code").GetString());
        Assert.Equal(["first", "second"], error.GetProperty("candidates").EnumerateArray().Select(c => c.GetString()));

        using var pinned = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = JsonContent.Create(Chat("gpt-4o-mini")) };
        pinned.Headers.Add(InvokeLlm.IntegrationHeader, "second");
        pinned.Headers.Add(InvokeLlm.RunIdHeader, "run-42");
        Assert.Equal(HttpStatusCode.OK, (await http.SendAsync(pinned)).StatusCode);
        var rows = await tenant.UsageAsync();
        Assert.Equal(("denied", "model_ambiguous", (Guid?)null), (rows[0].Status, rows[0].ErrorCode, rows[0].IntegrationId));
        Assert.Equal(("completed", "run-42"), (rows[1].Status, rows[1].RunId));

        var models = await (await http.GetAsync("/v1/models")).Content.ReadFromJsonAsync<JsonElement>();
        Assert.True(models.TryGetProperty("object", out _), models.GetRawText());
        Assert.Equal("list", models.GetProperty("object").GetString());
        Assert.Equal(["first/gpt-4o-mini", "second/gpt-4o-mini"], models.GetProperty("data").EnumerateArray().Select(m => m.GetProperty("id").GetString()));
    }

    [Fact]
    public async Task The_gateway_needs_the_llm_invoke_scope_and_answers_auth_errors_in_openai_shape()
    {
        var tenant = await fixture.TenantAsync();
        var readOnly = await fixture.Factory.KeyForAsync(tenant.Id, Scopes.Read);

        var forbidden = await Assert.ThrowsAsync<ClientResultException>(() =>
            tenant.OpenAi(readOnly.Key).GetChatClient("llm/gpt-4o-mini").CompleteChatAsync([new UserChatMessage("hi")]));
        var unauthenticated = await Assert.ThrowsAsync<ClientResultException>(() =>
            tenant.OpenAi("ik_not_a_key").GetChatClient("llm/gpt-4o-mini").CompleteChatAsync([new UserChatMessage("hi")]));

        Assert.Equal((403, 401), (forbidden.Status, unauthenticated.Status));
        Assert.Contains("llm:invoke", forbidden.Message, StringComparison.Ordinal);
        var body = JsonDocument.Parse(unauthenticated.GetRawResponse()!.Content.ToString()).RootElement;
        Assert.Equal("unauthenticated", body.GetProperty("error").GetProperty("code").GetString());
        Assert.DoesNotContain(fixture.Provider.Calls, c => c.Authorization == $"Bearer {tenant.Secret}");
    }

    [Fact]
    public async Task Usage_rows_are_listed_with_filters_and_keyset_pages()
    {
        var tenant = await fixture.TenantAsync(allowedModels: ["gpt-4o-mini", "gpt-4o"]);
        using var http = tenant.Http();
        foreach (var model in new[] { "llm/gpt-4o-mini", "llm/gpt-4o", "llm/gpt-4o-mini", "llm/o3" })
        {
            await http.PostAsJsonAsync("/v1/chat/completions", Chat(model));
        }

        var first = await tenant.Admin.GetFromJsonAsync<JsonElement>("/integrations/llm-requests?limit=2");
        var cursor = first.GetProperty("next_cursor").GetString();
        var second = await tenant.Admin.GetFromJsonAsync<JsonElement>($"/integrations/llm-requests?limit=2&cursor={cursor}");
        var denied = await tenant.Admin.GetFromJsonAsync<JsonElement>("/integrations/llm-requests?status=denied");
        var mini = await tenant.Admin.GetFromJsonAsync<JsonElement>($"/integrations/llm-requests?model=llm/gpt-4o-mini&integration_id={tenant.IntegrationId}");

        var ids = first.GetProperty("items").EnumerateArray().Concat(second.GetProperty("items").EnumerateArray()).Select(r => r.GetProperty("id").GetGuid()).ToList();
        Assert.Equal(4, ids.Distinct().Count());
        Assert.Equal(ids.OrderDescending(), ids);
        Assert.Equal(JsonValueKind.Null, second.GetProperty("next_cursor").ValueKind);
        Assert.Equal("llm/o3", Assert.Single(denied.GetProperty("items").EnumerateArray()).GetProperty("requested_model").GetString()!);
        Assert.Equal(2, mini.GetProperty("items").GetArrayLength());
        Assert.Equal(HttpStatusCode.BadRequest, (await tenant.Admin.GetAsync("/integrations/llm-requests?status=odd")).StatusCode);
    }

    private Task<int> UsageAsync(LlmGatewayFixture.Tenant tenant, Guid integrationId, string month, long tokens, decimal cents) =>
        OwnerSql.ExecuteAsync(fixture.ConnectionString, $"""
            INSERT INTO llm_usage_months (tenant_id, integration_id, month, requests, tokens, cost_cents)
            VALUES (@Id, @integrationId, ({month})::date, 1, @tokens, @cents)
            ON CONFLICT (tenant_id, integration_id, month) DO UPDATE SET tokens = llm_usage_months.tokens + EXCLUDED.tokens,
                cost_cents = llm_usage_months.cost_cents + EXCLUDED.cost_cents
            """, new { tenant.Id, integrationId, tokens, cents });
}
