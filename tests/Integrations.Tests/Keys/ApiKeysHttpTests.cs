using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Integrations.Common;
using Integrations.Infrastructure.Security;
using Integrations.Tests.Support;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Tests.Keys;

public sealed class ApiKeysHttpTests(ApiFixture fixture) : IClassFixture<ApiFixture>
{
    private ApiFactory Api => fixture.Factory;

    private HttpClient ClientWith(string key)
    {
        var client = Api.CreateClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return client;
    }

    private static async Task<JsonElement> JsonAsync(HttpResponseMessage response) =>
        JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;

    private static async Task<(HttpStatusCode, string?)> ProblemAsync(HttpResponseMessage response) =>
        (response.StatusCode, (await JsonAsync(response)).GetProperty("code").GetString());

    [Fact]
    public async Task An_admin_creates_a_key_shown_once_that_works_at_once_and_lists_without_its_secret()
    {
        var tenant = TestEnvironment.NewTenant();
        var admin = await Api.ClientForAsync(tenant, Scopes.Admin);
        var expires = DateTimeOffset.UtcNow.AddDays(30);

        var created = await admin.PostAsJsonAsync("/api-keys", new { name = "ci-runner", scopes = new[] { Scopes.Read, Scopes.Invoke }, expires_at = expires });

        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var body = await JsonAsync(created);
        var key = body.GetProperty("key").GetString()!;
        var id = body.GetProperty("api_key").GetProperty("id").GetString()!;
        Assert.StartsWith($"ik_{Guid.Parse(id):N}_", key);
        Assert.Equal(created.Headers.Location!.ToString(), $"/api-keys/{id}");

        var session = await JsonAsync(await ClientWith(key).GetAsync("/session"));
        Assert.Equal((tenant, id, "ci-runner"), (session.GetProperty("tenant_id").GetString(), session.GetProperty("key_id").GetString(),
            session.GetProperty("key_name").GetString()));
        Assert.Equal([Scopes.Read, Scopes.Invoke], session.GetProperty("scopes").EnumerateArray().Select(s => s.GetString()));
        Assert.Equal(expires.ToUnixTimeSeconds(), session.GetProperty("expires_at").GetDateTimeOffset().ToUnixTimeSeconds());
        Assert.Equal("medium", session.GetProperty("limits").GetProperty("risk_ceiling").GetString());
        Assert.InRange(session.GetProperty("server_time").GetDateTimeOffset(), DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddMinutes(1));

        var listText = await (await admin.GetAsync("/api-keys")).Content.ReadAsStringAsync();
        var listed = JsonDocument.Parse(listText).RootElement.GetProperty("items").EnumerateArray().Single(k => k.GetProperty("id").GetString() == id);
        Assert.Equal(($"ik_{Guid.Parse(id):N}", "active"), (listed.GetProperty("prefix").GetString(), listed.GetProperty("status").GetString()));
        Assert.DoesNotContain(key[(key.LastIndexOf('_') + 1)..], listText);
        Assert.DoesNotContain("hash", listText);
        Assert.NotEqual(JsonValueKind.Null, listed.GetProperty("last_used_at").ValueKind); // this replica's pending use

        var audit = await JsonAsync(await admin.GetAsync("/audit?action=api_keys.create"));
        var created_event = Assert.Single(audit.GetProperty("items").EnumerateArray());
        Assert.Equal(id, created_event.GetProperty("subject_id").GetString());
        Assert.DoesNotContain(key, created_event.GetRawText());
    }

    [Fact]
    public async Task Only_admin_keys_manage_keys_and_bad_input_is_400_naming_the_field()
    {
        var tenant = TestEnvironment.NewTenant();
        var writer = await Api.ClientForAsync(tenant, Scopes.Read, Scopes.Write, Scopes.Invoke);
        Assert.Equal((HttpStatusCode.Forbidden, "forbidden"), await ProblemAsync(await writer.PostAsJsonAsync("/api-keys", new { name = "x", scopes = new[] { Scopes.Read } })));
        Assert.Equal((HttpStatusCode.Forbidden, "forbidden"), await ProblemAsync(await writer.GetAsync("/api-keys")));
        Assert.Equal((HttpStatusCode.Forbidden, "forbidden"), await ProblemAsync(await writer.PostAsync($"/api-keys/{Guid.NewGuid()}/revoke", null)));

        var admin = await Api.ClientForAsync(tenant, Scopes.Admin);
        var bad = await admin.PostAsJsonAsync("/api-keys", new { name = "", scopes = new[] { "root" }, expires_at = DateTimeOffset.UtcNow.AddDays(-1) });
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        var errors = (await JsonAsync(bad)).GetProperty("errors");
        Assert.True(errors.TryGetProperty("name", out _) && errors.TryGetProperty("scopes", out _) && errors.TryGetProperty("expires_at", out _), errors.GetRawText());
        Assert.Equal((HttpStatusCode.BadRequest, "validation_failed"), await ProblemAsync(await admin.GetAsync("/api-keys?limit=0")));
    }

    [Fact]
    public async Task A_revoked_key_is_refused_from_the_next_request_and_another_tenants_key_cannot_be_revoked()
    {
        var tenant = TestEnvironment.NewTenant();
        var admin = await Api.ClientForAsync(tenant, Scopes.Admin);
        var created = await JsonAsync(await admin.PostAsJsonAsync("/api-keys", new { name = "leaked", scopes = new[] { Scopes.Read } }));
        var id = created.GetProperty("api_key").GetProperty("id").GetString();
        var leaked = ClientWith(created.GetProperty("key").GetString()!);
        Assert.Equal(HttpStatusCode.OK, (await leaked.GetAsync("/integrations")).StatusCode);

        var intruder = await Api.ClientForAsync(TestEnvironment.NewTenant(), Scopes.Admin);
        Assert.Equal((HttpStatusCode.NotFound, "not_found"), await ProblemAsync(await intruder.PostAsync($"/api-keys/{id}/revoke", null)));
        Assert.Equal(HttpStatusCode.OK, (await leaked.GetAsync("/integrations")).StatusCode);

        var revoked = await admin.PostAsync($"/api-keys/{id}/revoke", null);
        Assert.Equal("revoked", (await JsonAsync(revoked)).GetProperty("status").GetString());
        var refused = await leaked.GetAsync("/integrations");
        Assert.Equal((HttpStatusCode.Unauthorized, "unauthenticated"), await ProblemAsync(refused));
        Assert.StartsWith("Bearer", refused.Headers.WwwAuthenticate.ToString());
        Assert.Equal((HttpStatusCode.Conflict, "invalid_transition"), await ProblemAsync(await admin.PostAsync($"/api-keys/{id}/revoke", null)));

        var active = await JsonAsync(await admin.GetAsync("/api-keys"));
        Assert.DoesNotContain(active.GetProperty("items").EnumerateArray(), k => k.GetProperty("id").GetString() == id);
        var all = await JsonAsync(await admin.GetAsync("/api-keys?include_revoked=true"));
        Assert.Equal("revoked", all.GetProperty("items").EnumerateArray().Single(k => k.GetProperty("id").GetString() == id).GetProperty("status").GetString());
        Assert.Single((await JsonAsync(await admin.GetAsync("/audit?action=api_keys.revoke"))).GetProperty("items").EnumerateArray());
    }

    [Fact]
    public async Task An_expired_key_answers_401_saying_it_expired()
    {
        var tenant = TestEnvironment.NewTenant();
        var admin = await Api.ClientForAsync(tenant, Scopes.Admin);
        var created = await JsonAsync(await admin.PostAsJsonAsync("/api-keys",
            new { name = "short", scopes = new[] { Scopes.Read }, expires_at = DateTimeOffset.UtcNow.AddDays(1) }));
        var client = ClientWith(created.GetProperty("key").GetString()!);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/session")).StatusCode);

        // Time passes: the row says it expired a second ago (the change reaches every replica's cache).
        await OwnerSql.ExecuteAsync(Api.ConnectionString, "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = @id",
            new { id = Guid.Parse(created.GetProperty("api_key").GetProperty("id").GetString()!) });
        HttpResponseMessage response;
        var deadline = DateTime.UtcNow.AddSeconds(10);
        do
        {
            response = await client.GetAsync("/session");
        }
        while (response.StatusCode == HttpStatusCode.OK && DateTime.UtcNow < deadline && await Task.Delay(50).ContinueWith(_ => true));

        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Contains("expired at", (await JsonAsync(response)).GetProperty("detail").GetString());
        Assert.Equal("expired", (await JsonAsync(await admin.GetAsync("/api-keys"))).GetProperty("items").EnumerateArray().Single(k => k.GetProperty("name").GetString() == "short").GetProperty("status").GetString());
    }

    [Fact]
    public async Task Last_use_is_written_in_batches_not_per_request_and_lists_page_newest_first()
    {
        var tenant = TestEnvironment.NewTenant();
        var admin = await Api.ClientForAsync(tenant, Scopes.Admin);
        var ids = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            var created = await JsonAsync(await admin.PostAsJsonAsync("/api-keys", new { name = $"k{i}", scopes = new[] { Scopes.Read } }));
            ids.Add(created.GetProperty("api_key").GetProperty("id").GetString()!);
            if (i == 0) await ClientWith(created.GetProperty("key").GetString()!).GetAsync("/session");
        }
        var first = Guid.Parse(ids[0]);
        const string LastUsed = "SELECT last_used_at FROM api_keys WHERE id = @first";
        Assert.Equal([null], await OwnerSql.QueryAsync<DateTime?>(Api.ConnectionString, LastUsed, new { first }));

        await Api.Services.GetRequiredService<ApiKeyUsage>().FlushOnceAsync(CancellationToken.None);
        Assert.NotNull(Assert.Single(await OwnerSql.QueryAsync<DateTime?>(Api.ConnectionString, LastUsed, new { first })));

        var page1 = await JsonAsync(await admin.GetAsync("/api-keys?limit=2"));
        var cursor = page1.GetProperty("next_cursor").GetString();
        var page2 = await JsonAsync(await admin.GetAsync($"/api-keys?limit=2&cursor={cursor}"));
        var names = page1.GetProperty("items").EnumerateArray().Concat(page2.GetProperty("items").EnumerateArray())
            .Select(k => k.GetProperty("name").GetString()).ToList();
        Assert.Equal(["k2", "k1", "k0"], names.Where(n => n!.StartsWith('k') && n.Length == 2));
    }
}
