using System.Net;
using System.Net.Sockets;
using Integrations.Common;
using Integrations.Features.Credentials;
using Integrations.Features.Integrations;
using Integrations.Infrastructure.Vault;
using Integrations.Tests.Credentials;
using Integrations.Tests.Support;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Tests.Integrations;

/// <summary>
/// A fake provider on loopback that answers by path: <c>/status/{code}</c> with that status (and a body echoing the key,
/// as real providers do), <c>/slow</c> after 3 s (past the 1.5 s probe timeout, which leaves a loaded machine room for the fast answers), <c>/flaky/{token}</c> 503 once then 200, anything else 200.
/// </summary>
public sealed class HealthFixture : IAsyncLifetime
{
    public static readonly Dictionary<string, string?> Settings = new()
    {
        ["Integrations:Health:ProbeTimeout"] = "00:00:01.500",
        ["Integrations:Health:ProbeRetries"] = "1",
        ["Integrations:Health:RetryDelay"] = "00:00:00.020",
    };

    public ServiceHost Host { get; private set; } = null!;

    public FakeProvider Provider { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Host = await ServiceHost.StartAsync(Settings);
        Provider = await FakeProvider.StartAsync();
        Provider.Respond = async (context, _) =>
        {
            var segments = context.Request.Path.Value!.Split('/', StringSplitOptions.RemoveEmptyEntries);
            switch (segments)
            {
                case ["status", var code, ..]:
                    context.Response.StatusCode = int.Parse(code);
                    await context.Response.WriteAsync($"{{\"error\":\"Incorrect API key provided: {context.Request.Headers.Authorization}\"}}");
                    return;
                case ["slow", ..]:
                    await Task.Delay(3000, context.RequestAborted);
                    return;
                case ["flaky", var token, ..]:
                    var seen = Provider.Requests.Count(r => r.PathAndQuery.Contains($"/flaky/{token}/"));
                    context.Response.StatusCode = seen == 1 ? 503 : 200;
                    return;
                default:
                    await context.Response.WriteAsJsonAsync(new { data = Array.Empty<object>() });
                    return;
            }
        };
    }

    public async Task DisposeAsync()
    {
        await Provider.DisposeAsync();
        await Host.DisposeAsync();
    }
}

/// <summary>integrations.check_health through the real pipeline: resolution, probe, recorded health, audit.</summary>
public sealed class HealthCheckTests(HealthFixture fixture) : IClassFixture<HealthFixture>
{
    private ServiceHost Host => fixture.Host;

    private FakeProvider Provider => fixture.Provider;

    private async Task<(string Tenant, Guid Id, string Secret)> IntegrationAsync(string path, string provider = "openai_compatible", string? baseUrl = null)
    {
        var tenant = TestEnvironment.NewTenant();
        var secret = $"sk-health-{Guid.NewGuid():N}";
        var stored = await Host.StoreAsync(tenant, secret);
        var integration = await Host.IntegrationAsync(tenant, stored.Reference, provider: provider, baseUrl: baseUrl ?? $"{Provider.BaseUrl}{path}");
        return (tenant, integration.Id, secret);
    }

    private List<RecordedRequest> RequestsTo(string fragment) => Provider.Requests.Where(r => r.PathAndQuery.Contains(fragment)).ToList();

    [Theory]
    [InlineData(200, "healthy", "accepted", 1)]
    [InlineData(401, "failing", "rejected the credential", 1)]
    [InlineData(403, "failing", "rejected the credential", 1)]
    [InlineData(429, "degraded", "rate limiting", 1)]
    [InlineData(500, "degraded", "server error", 2)]
    [InlineData(503, "degraded", "server error", 2)]
    [InlineData(404, "failing", "check the base URL", 1)]
    public async Task The_providers_answer_decides_the_recorded_health(int status, string health, string message, int attempts)
    {
        var token = Guid.NewGuid().ToString("N");
        var (tenant, id, secret) = await IntegrationAsync($"/status/{status}/{token}/v1");

        var result = await Host.SendAsync(new CheckIntegrationHealth.Command(id), tenant);

        Assert.True(result.IsSuccess, result.Error?.Detail);
        Assert.Equal(health, result.Value.Health);
        Assert.Contains(message, result.Value.Message);
        Assert.Equal(status, result.Value.UpstreamStatus);
        Assert.Equal(attempts, RequestsTo(token).Count);
        var stored = (await Host.SendAsync(new GetIntegration.Query(id), tenant)).Value;
        Assert.Equal(health, stored.Health);
        Assert.Equal(result.Value.Message, stored.HealthMessage);
        Assert.NotNull(stored.HealthCheckedAt);
        Assert.DoesNotContain(secret, stored.HealthMessage);
        Assert.Equal(1, await OwnerSql.AuditCountAsync(Host.ConnectionString, tenant, CheckIntegrationHealth.Command.Operation));
        Assert.False(await VaultTestKit.DatabaseContainsAsync(Host.ConnectionString, tenant, secret));
        Assert.Equal(health == "failing", result.Value.IncidentId is not null);
    }

    [Fact]
    public async Task A_failing_check_opens_one_health_incident_and_repeats_bump_it()
    {
        var (tenant, id, secret) = await IntegrationAsync($"/status/401/{Guid.NewGuid():N}/v1");

        var first = await Host.SendAsync(new CheckIntegrationHealth.Command(id), tenant);
        var second = await Host.SendAsync(new CheckIntegrationHealth.Command(id), tenant);

        Assert.Equal(first.Value.IncidentId, second.Value.IncidentId);
        var incident = (await OwnerSql.QueryAsync<(string Kind, string SubjectId, int Occurrences, string Message)>(Host.ConnectionString,
            "SELECT kind, subject_id, occurrences, message FROM incidents WHERE tenant_id = @tenant", new { tenant })).Single();
        Assert.Equal(("health_failure", id.ToString(), 2), (incident.Kind, incident.SubjectId, incident.Occurrences));
        Assert.Contains("rejected the credential", incident.Message);
        Assert.DoesNotContain(secret, incident.Message);
    }

    [Fact]
    public async Task Failing_checks_in_a_row_move_an_enabled_integration_to_error_and_a_healthy_check_brings_it_back()
    {
        var token = Guid.NewGuid().ToString("N");
        var (tenant, id, _) = await IntegrationAsync($"/status/401/{token}/v1");
        Assert.True((await Host.SendAsync(new EnableIntegration.Command(id), tenant)).IsSuccess);

        async Task<(string Health, string Status, int Failures)> CheckAsync()
        {
            var result = await Host.SendAsync(new CheckIntegrationHealth.Command(id), tenant);
            Assert.True(result.IsSuccess, result.Error?.Detail);
            return (result.Value.Health, result.Value.Status, result.Value.ConsecutiveFailures);
        }
        Task MoveToAsync(string path) => Host.SendAsync(new UpdateIntegration.Command(id, new UpdateIntegration.Body(BaseUrl: $"{Provider.BaseUrl}{path}")), tenant);

        Assert.Equal(("failing", "enabled", 1), await CheckAsync());
        Assert.Equal(("failing", "enabled", 2), await CheckAsync());
        Assert.Equal(("failing", "error", 3), await CheckAsync());   // Integrations:Health:FailuresBeforeError, default 3
        Assert.Equal("error", (await Host.SendAsync(new GetIntegration.Query(id), tenant)).Value.Status);
        // The sweep keeps checking it: only a check can bring it back.
        Assert.Equal(1L, await OwnerSql.ScalarAsync<long>(Host.ConnectionString,
            "SELECT count(*) FROM enabled_integrations_after('00000000-0000-0000-0000-000000000000', 1000000) WHERE id = @id", new { id }));

        Assert.Equal(("failing", "error", 4), await CheckAsync());
        await MoveToAsync($"/status/429/{token}/v1");
        Assert.Equal(("degraded", "error", 0), await CheckAsync());   // the run ends; only healthy brings it back
        await MoveToAsync($"/ok/{token}/v1");
        Assert.Equal(("healthy", "enabled", 0), await CheckAsync());
        Assert.Equal("enabled", (await Host.SendAsync(new GetIntegration.Query(id), tenant)).Value.Status);

        var changes = await OwnerSql.QueryAsync<string>(Host.ConnectionString,
            "SELECT details->'status_changed'->>'from' || '->' || (details->'status_changed'->>'to') FROM audit_events " +
            "WHERE tenant_id = @tenant AND action = 'integrations.check_health' AND details ? 'status_changed' " +
            "AND details->'status_changed' <> 'null'::jsonb ORDER BY seq", new { tenant });
        Assert.Equal(["enabled->error", "error->enabled"], changes);

        // A disabled integration stays disabled however its checks go.
        await MoveToAsync($"/status/401/{token}/v1");
        Assert.True((await Host.SendAsync(new DisableIntegration.Command(id), tenant)).IsSuccess);
        for (var i = 0; i < 3; i++) await CheckAsync();
        Assert.Equal(("failing", "disabled", 4), await CheckAsync());
    }

    [Fact]
    public async Task A_provider_that_does_not_answer_in_time_is_failing_with_the_reason()
    {
        var token = Guid.NewGuid().ToString("N");
        var (tenant, id, _) = await IntegrationAsync($"/slow/{token}/v1");

        var result = await Host.SendAsync(new CheckIntegrationHealth.Command(id), tenant);

        Assert.Equal("failing", result.Value.Health);
        Assert.Contains("did not answer within 1.5 s", result.Value.Message);
        Assert.Null(result.Value.UpstreamStatus);
        Assert.Equal(2, RequestsTo(token).Count);
    }

    [Fact]
    public async Task An_unreachable_provider_is_failing_with_the_reason()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        var (tenant, id, _) = await IntegrationAsync("", baseUrl: $"http://127.0.0.1:{port}/v1");

        var result = await Host.SendAsync(new CheckIntegrationHealth.Command(id), tenant);

        Assert.Equal("failing", result.Value.Health);
        Assert.Equal("Could not reach the provider at 127.0.0.1: the connection was refused or dropped.", result.Value.Message);
    }

    [Fact]
    public async Task A_transient_server_error_is_retried_once_and_the_provider_is_healthy()
    {
        var token = Guid.NewGuid().ToString("N");
        var (tenant, id, _) = await IntegrationAsync($"/flaky/{token}/v1");
        var result = await Host.SendAsync(new CheckIntegrationHealth.Command(id), tenant);
        Assert.Equal("healthy", result.Value.Health);
        Assert.Equal(2, RequestsTo(token).Count);
    }

    [Theory]
    [InlineData("openai_compatible", "/v1", "/v1/models", "authorization", "Bearer {0}")]
    [InlineData("openai", "/v1", "/v1/models", "authorization", "Bearer {0}")]
    [InlineData("anthropic", "", "/v1/models", "x-api-key", "{0}")]
    [InlineData("azure_openai", "", "/openai/models?api-version=" + ProviderHealthProbe.AzureApiVersion, "api-key", "{0}")]
    [InlineData("google", "/v1beta", "/v1beta/models", "x-goog-api-key", "{0}")]
    public async Task The_probe_carries_the_resolved_key_in_the_providers_own_header(string provider, string basePath, string path, string header, string format)
    {
        var token = Guid.NewGuid().ToString("N");
        var (tenant, id, secret) = await IntegrationAsync($"/ok/{token}{basePath}", provider);

        Assert.Equal("healthy", (await Host.SendAsync(new CheckIntegrationHealth.Command(id), tenant)).Value.Health);

        var request = Assert.Single(RequestsTo(token));
        Assert.Equal("GET", request.Method);
        Assert.Equal($"/ok/{token}{path}", request.PathAndQuery);
        Assert.Equal(string.Format(format, secret), request.Headers[header]);
        var carriers = request.Headers.Where(h => h.Value.Contains(secret)).Select(h => h.Key);
        Assert.Equal([header], carriers);
        if (provider == "anthropic") Assert.Equal(ProviderHealthProbe.AnthropicVersion, request.Headers["anthropic-version"]);
    }

    [Theory]
    [InlineData("https://169.254.169.254/v1")]
    [InlineData("https://10.0.0.1/v1")]
    [InlineData("https://[::ffff:10.0.0.1]/v1")]
    [InlineData("https://100.64.0.1/v1")]
    [InlineData("https://[64:ff9b:1::a9fe:a9fe]/v1")]
    [InlineData("https://[2001:0:808:808::80ff:fffe]/v1")]
    [InlineData("https://[::ffff:0:a00:1]/v1")]
    [InlineData("https://192.31.196.1/v1")]
    public async Task A_base_url_on_a_private_or_metadata_address_is_refused_before_any_connection(string baseUrl)
    {
        var (tenant, id, _) = await IntegrationAsync("", baseUrl: baseUrl);

        var result = await Host.SendAsync(new CheckIntegrationHealth.Command(id), tenant);

        Assert.Equal("ssrf_blocked", result.Error?.Code);
        Assert.Equal(422, result.Error!.Status);
        Assert.Equal("unknown", (await Host.SendAsync(new GetIntegration.Query(id), tenant)).Value.Health);
    }

    [Fact]
    public async Task Without_a_credential_the_integration_is_failing_and_nothing_is_sent()
    {
        var tenant = TestEnvironment.NewTenant();
        var token = Guid.NewGuid().ToString("N");
        var integration = await Host.IntegrationAsync(tenant, credentialRef: null, baseUrl: $"{Provider.BaseUrl}/ok/{token}/v1");

        var result = await Host.SendAsync(new CheckIntegrationHealth.Command(integration.Id), tenant);

        Assert.Equal("failing", result.Value.Health);
        Assert.StartsWith("No credential is attached", result.Value.Message);
        Assert.Empty(RequestsTo(token));
    }

    [Fact]
    public async Task A_revoked_grant_stops_the_check_before_the_provider_is_called()
    {
        var token = Guid.NewGuid().ToString("N");
        var (tenant, id, _) = await IntegrationAsync($"/ok/{token}/v1");
        var credentialId = (await OwnerSql.QueryAsync<Guid>(Host.ConnectionString, "SELECT id FROM credentials WHERE tenant_id = @tenant", new { tenant })).Single();
        await Host.SendAsync(new RevokeCredentialGrant.Command(credentialId, CredentialAccessor.Integration, id), tenant);

        var result = await Host.SendAsync(new CheckIntegrationHealth.Command(id), tenant);

        Assert.Equal("credential_denied", result.Error?.Code);
        Assert.Empty(RequestsTo(token));
        Assert.Equal("unknown", (await Host.SendAsync(new GetIntegration.Query(id), tenant)).Value.Health);
        Assert.Equal("not_found", (await Host.SendAsync(new CheckIntegrationHealth.Command(Guid.NewGuid()), tenant)).Error?.Code);
        Assert.Equal("forbidden", (await Host.SendAsync(new CheckIntegrationHealth.Command(id), tenant, Scopes.Read)).Error?.Code);
    }

    [Fact]
    public async Task The_sweep_checks_every_enabled_integration_of_every_tenant_as_the_system()
    {
        var cs = await TestEnvironment.CreateMigratedDatabaseAsync("sweep");
        await using var host = await ServiceHost.StartAsync(new Dictionary<string, string?>(HealthFixture.Settings) { ["ConnectionStrings:Integrations"] = cs });
        var token = Guid.NewGuid().ToString("N");
        var enabled = new List<(string Tenant, Guid Id)>();
        foreach (var tenant in new[] { TestEnvironment.NewTenant(), TestEnvironment.NewTenant() })
        {
            var stored = await host.StoreAsync(tenant, "sk-sweep");
            var on = await host.IntegrationAsync(tenant, stored.Reference, "on", baseUrl: $"{Provider.BaseUrl}/ok/{token}/v1");
            await host.SendAsync(new EnableIntegration.Command(on.Id), tenant);
            await host.IntegrationAsync(tenant, stored.Reference, "off", baseUrl: $"{Provider.BaseUrl}/ok/{token}/v1");
            enabled.Add((tenant, on.Id));
        }

        var count = await host.Services.GetRequiredService<IntegrationHealthSweep>().RunOnceAsync(CancellationToken.None);

        Assert.Equal(2, count);
        Assert.Equal(2, RequestsTo(token).Count);
        foreach (var (tenant, id) in enabled)
        {
            Assert.Equal("healthy", (await host.SendAsync(new GetIntegration.Query(id), tenant)).Value.Health);
            Assert.Equal(IntegrationHealthSweep.Actor, await OwnerSql.ScalarAsync<string>(cs,
                "SELECT actor FROM audit_events WHERE tenant_id = @tenant AND action = 'integrations.check_health'", new { tenant }));
        }
        Assert.Equal(["unknown", "unknown"], await OwnerSql.QueryAsync<string>(cs, "SELECT health FROM cus_integrations WHERE name = 'off'"));
    }
}
