using System.ClientModel;
using System.ClientModel.Primitives;
using System.Net.Http.Json;
using System.Text.Json;
using Integrations.Common;
using Integrations.Tests.Support;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using OpenAI;

namespace Integrations.Tests.LlmGateway;

/// <summary>The HTTP host and one fake OpenAI provider shared by the gateway's tests; each test makes its own tenant.</summary>
public class LlmGatewayFixture : IAsyncLifetime
{
    /// <summary>Kestrel on a loopback port instead of the in-memory test server, for clients in other processes.</summary>
    protected virtual bool RealServer => false;

    public ApiFactory Factory { get; private set; } = null!;

    public FakeOpenAi Provider { get; private set; } = null!;

    public string ConnectionString => Factory.ConnectionString;

    public async Task InitializeAsync()
    {
        Provider = await FakeOpenAi.StartAsync();
        Factory = await ApiFactory.StartAsync();
        if (RealServer)
        {
            Factory.UseKestrel(0);
            Factory.StartServer();
        }
        else
        {
            _ = Factory.Server;
        }
    }

    /// <summary>Where a client in another process reaches the gateway (with <see cref="RealServer"/>).</summary>
    public Uri Address => new(Factory.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());

    public async Task DisposeAsync()
    {
        await Factory.DisposeAsync();
        await Provider.DisposeAsync();
    }

    /// <summary>A tenant with an enabled <c>openai_compatible</c> integration on the fake provider, its key in the vault.</summary>
    public async Task<Tenant> TenantAsync(string name = "llm", object? limits = null, string[]? allowedModels = null, bool enable = true)
    {
        var tenant = new Tenant(this, TestEnvironment.NewTenant());
        tenant.Admin = await Factory.ClientForAsync(tenant.Id);
        tenant.Secret = $"sk-fake-{Guid.NewGuid():N}";
        tenant.IntegrationId = await tenant.IntegrationAsync(name, limits, allowedModels, enable);
        var key = await Factory.KeyForAsync(tenant.Id, Scopes.LlmInvoke);
        tenant.LlmKey = key.Key;
        tenant.LlmKeyId = key.Id;
        return tenant;
    }

    public sealed class Tenant(LlmGatewayFixture fixture, string id)
    {
        public string Id { get; } = id;
        public HttpClient Admin { get; set; } = null!;
        public string Secret { get; set; } = "";
        public Guid IntegrationId { get; set; }
        public string LlmKey { get; set; } = "";
        public Guid LlmKeyId { get; set; }

        public async Task<Guid> IntegrationAsync(string name, object? limits = null, string[]? allowedModels = null, bool enable = true,
            string provider = "openai_compatible", string? baseUrl = null, string[]? fallbacks = null, string? secret = null)
        {
            var stored = await Admin.PostAsJsonAsync("/credentials", new { name = $"{name}-key", type = "api_key", secret = secret ?? Secret });
            Assert.True(stored.IsSuccessStatusCode, await stored.Content.ReadAsStringAsync());
            var reference = (await stored.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("reference").GetString();
            var created = await Admin.PostAsJsonAsync("/integrations", new
            {
                name,
                provider,
                base_url = baseUrl ?? fixture.Provider.BaseUrl,
                credential_ref = reference,
                limits,
                allowed_models = allowedModels,
                fallbacks,
            });
            Assert.True(created.IsSuccessStatusCode, await created.Content.ReadAsStringAsync());
            var integrationId = (await created.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetGuid();
            if (enable)
            {
                var enabled = await Admin.PostAsync($"/integrations/{integrationId}/enable", null);
                Assert.True(enabled.IsSuccessStatusCode, await enabled.Content.ReadAsStringAsync());
            }
            return integrationId;
        }

        /// <summary>The official OpenAI SDK pointed at the gateway's /v1 with this tenant's llm:invoke key (its own retries off).</summary>
        public OpenAIClient OpenAi(string? key = null) => new(new ApiKeyCredential(key ?? LlmKey), new OpenAIClientOptions
        {
            Endpoint = new Uri(fixture.Factory.Server.BaseAddress, "/v1"),
            Transport = new HttpClientPipelineTransport(fixture.Factory.CreateClient()),
            RetryPolicy = new ClientRetryPolicy(maxRetries: 0),
            NetworkTimeout = TimeSpan.FromSeconds(60),
        });

        /// <summary>A plain HTTP client with the llm:invoke key (of another replica on the same database when given).</summary>
        public HttpClient Http(ApiFactory? replica = null)
        {
            var client = (replica ?? fixture.Factory).CreateClient();
            client.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", LlmKey);
            return client;
        }

        public async Task<List<UsageRow>> UsageAsync() => await OwnerSql.QueryAsync<UsageRow>(fixture.ConnectionString, """
            SELECT id, integration_id, api_key_id, run_id, endpoint, requested_model, served_model, provider, streaming, prompt_tokens,
                   completion_tokens, cached_tokens, tokens_estimated, cost_cents, status, error_code, upstream_status, latency_ms,
                   first_token_ms, attempts, incident_id, fallback_of
            FROM llm_requests WHERE tenant_id = @Id ORDER BY id
            """, new { Id });

        /// <summary>Waits (at most 10 s) until the tenant has <paramref name="count"/> usage rows: a stream's row is written as it ends.</summary>
        public async Task<List<UsageRow>> UsageAsync(int count)
        {
            var deadline = DateTime.UtcNow.AddSeconds(10);
            while (true)
            {
                var rows = await UsageAsync();
                if (rows.Count >= count || DateTime.UtcNow > deadline) return rows;
                await Task.Delay(50);
            }
        }

        public async Task<List<string>> EventsAsync(Guid invocationId) => await OwnerSql.QueryAsync<string>(fixture.ConnectionString,
            "SELECT action FROM audit_events WHERE tenant_id = @Id AND correlation_id = @Correlation ORDER BY seq",
            new { Id, Correlation = invocationId.ToString() });

        public async Task<JsonElement> EventDetailsAsync(Guid invocationId, string action) => JsonDocument.Parse(await OwnerSql.ScalarAsync<string>(
            fixture.ConnectionString,
            "SELECT details::text FROM audit_events WHERE tenant_id = @Id AND correlation_id = @Correlation AND action = @action",
            new { Id, Correlation = invocationId.ToString(), action })).RootElement;
    }
}

public sealed class UsageRow
{
    public Guid Id { get; init; }
    public Guid? IntegrationId { get; init; }
    public Guid? ApiKeyId { get; init; }
    public string? RunId { get; init; }
    public string Endpoint { get; init; } = "";
    public string RequestedModel { get; init; } = "";
    public string? ServedModel { get; init; }
    public string? Provider { get; init; }
    public bool Streaming { get; init; }
    public long PromptTokens { get; init; }
    public long CompletionTokens { get; init; }
    public long CachedTokens { get; init; }
    public bool TokensEstimated { get; init; }
    public decimal? CostCents { get; init; }
    public string Status { get; init; } = "";
    public string? ErrorCode { get; init; }
    public int? UpstreamStatus { get; init; }
    public double LatencyMs { get; init; }
    public double? FirstTokenMs { get; init; }
    public int Attempts { get; init; }
    public Guid? IncidentId { get; init; }
    public Guid? FallbackOf { get; init; }
}
