using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Integrations.Tests.Support;

namespace Integrations.Tests.LlmGateway;

/// <summary>Fallback integrations: each tried as a governed call of its own (rules, key, events, usage row) while the client has received nothing.</summary>
public sealed class LlmFallbackTests(LlmGatewayFixture fixture) : IClassFixture<LlmGatewayFixture>
{
    private static object Chat(string model, bool stream = false) => new { model, stream, messages = new[] { new { role = "user", content = "hi" } } };

    [Fact]
    public async Task When_the_primary_answers_500_its_fallbacks_are_tried_in_order_each_under_its_own_rules_key_and_record()
    {
        var tenant = await fixture.TenantAsync();
        var backup = await tenant.IntegrationAsync("backup", enable: false, secret: "sk-backup");
        var spareSecret = $"sk-spare-{Guid.NewGuid():N}";
        var spare = await tenant.IntegrationAsync("spare", allowedModels: ["gpt-4o-mini"], secret: spareSecret);
        var main = await tenant.IntegrationAsync("main", fallbacks: ["backup/gpt-4o-mini", "spare/gpt-4o-mini"]);
        using var http = tenant.Http();

        var response = await http.PostAsJsonAsync("/v1/chat/completions", Chat("main/gpt-4o-fail-500"));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var answer = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal("echo: hi", answer.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
        var rows = await tenant.UsageAsync();
        Assert.Equal([main, backup, spare], rows.Select(r => r.IntegrationId!.Value));
        Assert.Equal([("failed", "upstream_error"), ("denied", "policy_denied"), ("completed", null)], rows.Select(r => (r.Status, r.ErrorCode)));
        Assert.Equal([null, rows[0].Id, rows[0].Id], rows.Select(r => r.FallbackOf));
        Assert.Equal(["main/gpt-4o-fail-500", "gpt-4o-mini", "gpt-4o-mini"], rows.Select(r => r.RequestedModel));
        Assert.Equal(rows[2].Id.ToString(), response.Headers.GetValues("X-Invocation-Id").Single());
        Assert.NotNull(rows[0].IncidentId); // the primary's provider failed: its incident, whoever answered

        Assert.Equal(["llm.request.requested", "llm.request.allowed", "llm.request.started", "llm.request.failed"], await tenant.EventsAsync(rows[0].Id));
        Assert.Equal(["llm.request.requested", "llm.request.denied"], await tenant.EventsAsync(rows[1].Id));
        Assert.Equal("integration_disabled", (await tenant.EventDetailsAsync(rows[1].Id, "llm.request.denied")).GetProperty("rule").GetString());
        Assert.Equal(["llm.request.requested", "llm.request.allowed", "llm.request.started", "llm.request.completed"], await tenant.EventsAsync(rows[2].Id));
        Assert.Equal(rows[0].Id.ToString(), (await tenant.EventDetailsAsync(rows[2].Id, "llm.request.completed")).GetProperty("fallback_of").GetString());

        // The spare's own key, resolved under the spare's own grant; the disabled backup's key never resolved.
        Assert.Single(fixture.Provider.CallsFor("gpt-4o-mini"), c => c.Authorization == $"Bearer {spareSecret}");
        var resolvedFor = await OwnerSql.QueryAsync<string>(fixture.ConnectionString,
            "SELECT accessor_id FROM credential_access_log WHERE tenant_id = @Id AND outcome = 'allowed'", new { tenant.Id });
        Assert.Contains(spare.ToString(), resolvedFor);
        Assert.DoesNotContain(backup.ToString(), resolvedFor);
    }

    [Fact]
    public async Task When_every_fallback_fails_the_primarys_error_answers_naming_the_fallbacks_tried()
    {
        var tenant = await fixture.TenantAsync();
        await tenant.IntegrationAsync("backup", enable: false);
        await tenant.IntegrationAsync("main", fallbacks: ["backup", "gone/gpt-4o"]);
        using var http = tenant.Http();

        var response = await http.PostAsJsonAsync("/v1/chat/completions", Chat("main/all-fail-500"));

        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        var error = (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("error");
        Assert.Equal("upstream_error", error.GetProperty("code").GetString());
        var rows = await tenant.UsageAsync();
        Assert.Equal(2, rows.Count); // the primary and the disabled backup; 'gone' routes to no integration: audited, no row
        Assert.Equal(rows[0].Id.ToString(), error.GetProperty("invocation_id").GetString());
        var tried = error.GetProperty("fallbacks").EnumerateArray().Select(f => f.GetProperty("code").GetString()).ToList();
        Assert.Equal(["policy_denied", "not_found"], tried);
        Assert.Equal(rows[1].Id.ToString(), error.GetProperty("fallbacks")[0].GetProperty("invocation_id").GetString());
    }

    [Fact]
    public async Task No_fallback_after_the_first_byte_reached_the_client_nor_after_a_refusal_of_the_caller()
    {
        var tenant = await fixture.TenantAsync();
        await tenant.IntegrationAsync("spare");
        await tenant.IntegrationAsync("main", allowedModels: ["gpt-4o-drop"], fallbacks: ["spare"]);
        using var http = tenant.Http();

        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = JsonContent.Create(Chat("main/gpt-4o-drop", stream: true)) };
        using var dropped = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        var streamed = await dropped.Content.ReadAsStringAsync();
        var notAllowed = await http.PostAsJsonAsync("/v1/chat/completions", Chat("main/gpt-4o"));

        Assert.Equal(HttpStatusCode.OK, dropped.StatusCode);
        Assert.Contains("\"error\"", streamed, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.Forbidden, notAllowed.StatusCode);
        var rows = await tenant.UsageAsync(2);
        Assert.Equal([("failed", "upstream_error"), ("denied", "policy_denied")], rows.Select(r => (r.Status, r.ErrorCode)));
        Assert.All(rows, r => Assert.Null(r.FallbackOf));
        Assert.DoesNotContain(fixture.Provider.CallsFor("gpt-4o"), c => c.Authorization == $"Bearer {tenant.Secret}");
    }

    [Fact]
    public async Task Fallbacks_are_stored_shown_and_validated()
    {
        var tenant = await fixture.TenantAsync();
        var main = await tenant.IntegrationAsync("main", fallbacks: ["spare", "other/gpt-4o-mini"]);

        var shown = await tenant.Admin.GetFromJsonAsync<JsonElement>($"/integrations/{main}");
        var self = await tenant.Admin.PatchAsJsonAsync($"/integrations/{main}", new { name = "main", fallbacks = new[] { "main/gpt-4o" } });
        var tooMany = await tenant.Admin.PatchAsJsonAsync($"/integrations/{main}", new { fallbacks = new[] { "a", "b", "c", "d", "e", "f" } });
        var cleared = await tenant.Admin.PatchAsJsonAsync($"/integrations/{main}", new { fallbacks = Array.Empty<string>() });

        Assert.Equal(["spare", "other/gpt-4o-mini"], shown.GetProperty("fallbacks").EnumerateArray().Select(f => f.GetString()));
        Assert.Equal((HttpStatusCode.BadRequest, HttpStatusCode.BadRequest, HttpStatusCode.OK), (self.StatusCode, tooMany.StatusCode, cleared.StatusCode));
        Assert.Empty((await cleared.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("fallbacks").EnumerateArray());
    }
}
