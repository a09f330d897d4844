using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Integrations.Common;
using Integrations.Infrastructure.Security;
using Integrations.Tests.Integrations;
using Integrations.Tests.Support;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Integrations.Tests.Credentials;

/// <summary>The HTTP host with every log line captured at Trace level, and a fake provider on loopback.</summary>
public sealed class CapturingApiFixture : IAsyncLifetime
{
    private ApiFactory _parent = null!;

    public LogCapture Logs { get; } = new();

    public WebApplicationFactory<Program> Api { get; private set; } = null!;

    public FakeProvider Provider { get; private set; } = null!;

    public string ConnectionString => _parent.ConnectionString;

    public async Task InitializeAsync()
    {
        _parent = await ApiFactory.StartAsync();
        Api = _parent.WithWebHostBuilder(b =>
        {
            b.UseSetting("Logging:LogLevel:Default", "Trace");
            b.UseSetting("Logging:LogLevel:Microsoft.AspNetCore", "Trace");
            foreach (var (key, value) in HealthFixture.Settings) b.UseSetting(key, value);
            b.ConfigureTestServices(s => s.AddSingleton<ILoggerProvider>(Logs));
        });
        _ = Api.Server;
        Provider = await FakeProvider.StartAsync();
    }

    public async Task<(HttpClient Client, string ApiKey)> ClientForAsync(string tenant, params string[] scopes)
    {
        var key = await Api.Services.GetRequiredService<ApiKeys>().CreateAsync(tenant, "test", scopes.Length == 0 ? Scopes.All : scopes, CancellationToken.None);
        var client = Api.CreateClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key.Key);
        return (client, key.Key);
    }

    public async Task DisposeAsync()
    {
        await Provider.DisposeAsync();
        await Api.DisposeAsync();
        await _parent.DisposeAsync();
    }
}

/// <summary>The credentials HTTP surface, and the promise that a secret never leaves the vault except towards its provider.</summary>
public sealed class CredentialHttpTests(CapturingApiFixture fixture) : IClassFixture<CapturingApiFixture>
{
    private readonly List<string> _bodies = [];

    private async Task<JsonElement> JsonAsync(HttpResponseMessage response, HttpStatusCode expected)
    {
        var body = await response.Content.ReadAsStringAsync();
        _bodies.Add(body);
        Assert.True(expected == response.StatusCode, $"{(int)response.StatusCode}: {body}");
        return body.Length == 0 ? default : JsonDocument.Parse(body).RootElement.Clone();
    }

    [Fact]
    public async Task Scopes_guard_the_credentials_routes()
    {
        var tenant = TestEnvironment.NewTenant();
        var (reader, _) = await fixture.ClientForAsync(tenant, Scopes.Read);
        var (writer, _) = await fixture.ClientForAsync(tenant, Scopes.Read, Scopes.Write);

        Assert.Equal(HttpStatusCode.Forbidden, (await reader.PostAsJsonAsync("/credentials", new { name = "k", type = "api_key", secret = "sk-x" })).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await writer.PostAsJsonAsync("/credentials/encrypt", new { secret = "sk-x" })).StatusCode);
        var created = await JsonAsync(await writer.PostAsJsonAsync("/credentials", new { name = "k", type = "api_key", secret = "sk-x" }), HttpStatusCode.Created);
        var id = created.GetProperty("id").GetString();
        await JsonAsync(await reader.GetAsync("/credentials"), HttpStatusCode.OK);
        await JsonAsync(await reader.GetAsync($"/credentials/{id}"), HttpStatusCode.OK);
        await JsonAsync(await reader.GetAsync("/credentials/access-log"), HttpStatusCode.OK);
        Assert.Equal(HttpStatusCode.Forbidden, (await reader.DeleteAsync($"/credentials/{id}")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await (await fixture.ClientForAsync(TestEnvironment.NewTenant())).Client.GetAsync($"/credentials/{id}")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await fixture.Api.CreateClient().GetAsync("/credentials")).StatusCode);
    }

    [Fact]
    public async Task A_secret_never_appears_in_responses_logs_traces_audit_rows_or_exceptions_and_only_the_provider_receives_it()
    {
        using var activities = new ActivityCapture();
        var tenant = TestEnvironment.NewTenant();
        var (client, apiKey) = await fixture.ClientForAsync(tenant);
        string NewSecret(string kind) => $"{kind}-{Guid.NewGuid():N}";
        var key = NewSecret("sk-live");
        var password = NewSecret("pw");
        var rotated = NewSecret("sk-rotated");
        var encrypted = NewSecret("sk-blob");
        var pasted = NewSecret("sk-pasted");
        var misplaced = NewSecret("sk-misplaced");
        string[] secrets = [key, password, rotated, encrypted, pasted, misplaced];
        var token = Guid.NewGuid().ToString("N");
        var baseUrl = $"{fixture.Provider.BaseUrl}/ok/{token}/v1";

        // Store, with a rejected body on the way.
        var stored = await JsonAsync(await client.PostAsJsonAsync("/credentials", new { name = "openai", type = "api_key", secret = key, description = "prod key" }), HttpStatusCode.Created);
        await JsonAsync(await client.PostAsJsonAsync("/credentials", new { name = "basic", type = "basic_auth", username = "svc", password }), HttpStatusCode.Created);
        var rejected = await JsonAsync(await client.PostAsJsonAsync("/credentials", new { name = "bad", type = "basic_auth", secret = misplaced }), HttpStatusCode.BadRequest);
        Assert.Equal("validation_failed", rejected.GetProperty("code").GetString());
        var raw = await JsonAsync(await client.PostAsJsonAsync("/integrations", new { name = "raw", provider = "openai", credential_ref = pasted }), HttpStatusCode.BadRequest);
        Assert.Contains("POST /credentials", raw.GetProperty("errors").GetProperty("credential_ref")[0].GetString());
        var credentialId = stored.GetProperty("id").GetString();
        var reference = stored.GetProperty("reference").GetString();
        Assert.Equal($"cus-vault://{tenant}/{credentialId}", reference);

        // Attach, check health: the provider receives the key, never the caller's API key.
        var integration = await JsonAsync(await client.PostAsJsonAsync("/integrations", new { name = "llm", provider = "openai_compatible", base_url = baseUrl, credential_ref = reference }), HttpStatusCode.Created);
        var integrationId = integration.GetProperty("id").GetString();
        var health = await JsonAsync(await client.PostAsync($"/integrations/{integrationId}/health", null), HttpStatusCode.OK);
        Assert.Equal("healthy", health.GetProperty("health").GetString());

        // Rotate: the next probe carries the new key.
        var afterRotation = await JsonAsync(await client.PostAsJsonAsync($"/credentials/{credentialId}/rotate", new { secret = rotated }), HttpStatusCode.OK);
        Assert.Equal(2, afterRotation.GetProperty("version").GetInt32());
        await JsonAsync(await client.PostAsync($"/integrations/{integrationId}/health", null), HttpStatusCode.OK);

        // encrypted:// made by an admin, attached to a second integration.
        var blob = await JsonAsync(await client.PostAsJsonAsync("/credentials/encrypt", new { secret = encrypted }), HttpStatusCode.OK);
        var second = await JsonAsync(await client.PostAsJsonAsync("/integrations", new
        {
            name = "llm-2",
            provider = "openai_compatible",
            base_url = baseUrl,
            credential_ref = blob.GetProperty("reference").GetString(),
        }), HttpStatusCode.Created);
        await JsonAsync(await client.PostAsync($"/integrations/{second.GetProperty("id").GetString()}/health", null), HttpStatusCode.OK);

        // A revoked grant is a 403, and shows in the access log.
        Assert.Equal(HttpStatusCode.NoContent, (await client.DeleteAsync($"/credentials/{credentialId}/grants/integration/{integrationId}")).StatusCode);
        var denied = await JsonAsync(await client.PostAsync($"/integrations/{integrationId}/health", null), HttpStatusCode.Forbidden);
        Assert.Equal("credential_denied", denied.GetProperty("code").GetString());
        var grant = await JsonAsync(await client.PostAsJsonAsync($"/credentials/{credentialId}/grants", new { accessor_type = "integration", accessor_id = integrationId }), HttpStatusCode.Created);
        Assert.Equal("integration", grant.GetProperty("accessor_type").GetString());

        // An unexpected failure while resolving: a 500 without internals, and the secret is not released.
        var trigger = $"refuse_{Guid.NewGuid():N}";
        await OwnerSql.ExecuteAsync(fixture.ConnectionString, $"""
            CREATE FUNCTION {trigger}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'access log unavailable'; END $$;
            CREATE TRIGGER {trigger} BEFORE INSERT ON credential_access_log FOR EACH ROW WHEN (NEW.tenant_id = '{tenant}') EXECUTE FUNCTION {trigger}();
            """);
        try
        {
            var failed = await JsonAsync(await client.PostAsync($"/integrations/{integrationId}/health", null), HttpStatusCode.InternalServerError);
            Assert.Equal("internal_error", failed.GetProperty("code").GetString());
        }
        finally
        {
            await OwnerSql.ExecuteAsync(fixture.ConnectionString, $"DROP TRIGGER {trigger} ON credential_access_log; DROP FUNCTION {trigger}();");
        }

        // Reads: metadata, access log, audit.
        var got = await JsonAsync(await client.GetAsync($"/credentials/{credentialId}"), HttpStatusCode.OK);
        Assert.Equal(integrationId, got.GetProperty("grants")[0].GetProperty("accessor_id").GetString());
        var list = await JsonAsync(await client.GetAsync("/credentials?limit=1"), HttpStatusCode.OK);
        Assert.NotEqual(JsonValueKind.Null, list.GetProperty("next_cursor").ValueKind);
        var log = await JsonAsync(await client.GetAsync($"/credentials/access-log?credential_id={credentialId}"), HttpStatusCode.OK);
        Assert.Equal(["denied", "allowed", "allowed"], log.GetProperty("items").EnumerateArray().Select(e => e.GetProperty("outcome").GetString()));
        var audit = await JsonAsync(await client.GetAsync("/audit?limit=200"), HttpStatusCode.OK);
        var actions = audit.GetProperty("items").EnumerateArray().Select(e => e.GetProperty("action").GetString()).ToList();
        Assert.Contains("credential.accessed", actions);
        Assert.Contains("credential.denied", actions);
        Assert.Contains("credentials.rotate", actions);
        Assert.True((await JsonAsync(await client.PostAsync("/audit/verify", null), HttpStatusCode.OK)).GetProperty("valid").GetBoolean());
        Assert.Equal(HttpStatusCode.NoContent, (await client.DeleteAsync($"/credentials/{credentialId}")).StatusCode);

        // The provider saw each key in its own header, and never the caller's API key.
        var requests = fixture.Provider.Requests.Where(r => r.PathAndQuery.Contains(token)).ToList();
        Assert.Equal([$"Bearer {key}", $"Bearer {rotated}", $"Bearer {encrypted}"], requests.Select(r => r.Headers["authorization"]));
        Assert.DoesNotContain(requests, r => r.Headers.Values.Any(v => v.Contains(apiKey) || v.Contains(apiKey[3..35])));

        // And nowhere else: responses, logs (with exceptions), activities, database rows.
        Assert.Contains(fixture.Logs.Lines, l => l.Contains("Unhandled exception"));
        Assert.Contains(activities.Lines, l => l.Contains("integrations.check_health"));
        Assert.Contains(activities.Lines, l => l.StartsWith("System.Net.Http"));
        foreach (var secret in secrets)
        {
            Assert.DoesNotContain(_bodies, b => b.Contains(secret));
            Assert.DoesNotContain(fixture.Logs.Lines, l => l.Contains(secret));
            Assert.DoesNotContain(activities.Lines, l => l.Contains(secret));
            Assert.False(await VaultTestKit.DatabaseContainsAsync(fixture.ConnectionString, tenant, secret), $"the database holds {secret[..5]}...");
        }
    }

    [Fact]
    public async Task Allowed_hosts_travel_as_json_and_attaching_a_bound_credential_elsewhere_is_a_422_problem()
    {
        var tenant = TestEnvironment.NewTenant();
        var (admin, _) = await fixture.ClientForAsync(tenant);
        var (writer, _) = await fixture.ClientForAsync(tenant, Scopes.Read, Scopes.Write);
        var stored = await JsonAsync(await admin.PostAsJsonAsync("/credentials",
            new { name = "bound", type = "api_key", secret = "sk-http-bound", allowed_hosts = new[] { "llm.example.com" } }), HttpStatusCode.Created);
        Assert.Equal("llm.example.com", stored.GetProperty("allowed_hosts")[0].GetString());
        var reference = stored.GetProperty("reference").GetString();

        var elsewhere = await admin.PostAsJsonAsync("/integrations", new { name = "x", provider = "openai_compatible", base_url = "https://attacker.test/v1", credential_ref = reference });
        var problem = await JsonAsync(elsewhere, HttpStatusCode.UnprocessableEntity);
        Assert.Equal("credential_host_not_allowed", problem.GetProperty("code").GetString());
        var withoutScope = await writer.PostAsJsonAsync("/integrations", new { name = "y", provider = "openai_compatible", base_url = "https://llm.example.com/v1", credential_ref = reference });
        Assert.Equal("forbidden", (await JsonAsync(withoutScope, HttpStatusCode.Forbidden)).GetProperty("code").GetString());
        Assert.Equal(HttpStatusCode.Forbidden,
            (await writer.PatchAsJsonAsync($"/credentials/{stored.GetProperty("id").GetString()}", new { allowed_hosts = new[] { "attacker.test" } })).StatusCode);

        var widened = await JsonAsync(await admin.PatchAsJsonAsync($"/credentials/{stored.GetProperty("id").GetString()}",
            new { allowed_hosts = new[] { "*.example.com" } }), HttpStatusCode.OK);
        Assert.Equal("*.example.com", widened.GetProperty("allowed_hosts")[0].GetString());
        var policy = await JsonAsync(await admin.PutAsJsonAsync("/policies/credentials", new { require_allowed_hosts = true }), HttpStatusCode.OK);
        Assert.True(policy.GetProperty("require_allowed_hosts").GetBoolean());
        Assert.True((await JsonAsync(await writer.GetAsync("/policies/credentials"), HttpStatusCode.OK)).GetProperty("require_allowed_hosts").GetBoolean());
        Assert.DoesNotContain(fixture.Logs.Lines, m => m.Contains("sk-http-bound", StringComparison.Ordinal));
    }
}
