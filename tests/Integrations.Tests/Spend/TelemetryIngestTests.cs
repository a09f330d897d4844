using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Integrations.Common;
using Integrations.Tests.LlmGateway;
using Integrations.Tests.Support;

namespace Integrations.Tests.Spend;

public sealed class TelemetryIngestTests(LlmGatewayFixture fixture) : IClassFixture<LlmGatewayFixture>
{
    private static async Task<JsonElement> JsonAsync(HttpResponseMessage response) =>
        JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;

    private async Task<(LlmGatewayFixture.Tenant Tenant, HttpClient Writer, Guid WriterKeyId)> TenantAsync()
    {
        var tenant = await fixture.TenantAsync();
        var key = await fixture.Factory.KeyForAsync(tenant.Id, Scopes.Write, Scopes.Read);
        var writer = fixture.Factory.CreateClient();
        writer.DefaultRequestHeaders.Authorization = new("Bearer", key.Key);
        return (tenant, writer, key.Id);
    }

    [Fact]
    public async Task A_batch_keeps_the_good_records_reports_the_bad_by_index_and_a_retried_batch_counts_once()
    {
        var (tenant, writer, writerKeyId) = await TenantAsync();
        var started = DateTimeOffset.UtcNow.AddMinutes(-10);
        var batch = new
        {
            records = new object[]
            {
                new { idempotency_id = "a-1", integration = "llm", model = "gpt-4o", prompt_tokens = 1000, completion_tokens = 500,
                      started_at = started, finished_at = started.AddMilliseconds(1500), run_id = "run-7" },
                new { model = "gpt-4o", prompt_tokens = -1, started_at = started, provider = "openai" },
                new { idempotency_id = "a-3", provider = "Anthropic", model = "claude-haiku-4-5", prompt_tokens = 10, completion_tokens = 5,
                      cost_cents = 2.5, latency_ms = 800, started_at = started, status = "failed", error_code = "overloaded" },
                new { idempotency_id = "a-4", integration = "nobody", model = "gpt-4o", started_at = started },
                new { idempotency_id = "a-1", integration = "llm", model = "gpt-4o", prompt_tokens = 1000, completion_tokens = 500, started_at = started },
            },
        };

        var first = await writer.PostAsJsonAsync("/telemetry/llm-usage", batch);

        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        var body = await JsonAsync(first);
        Assert.Equal((5, 2, 1), (body.GetProperty("received").GetInt32(), body.GetProperty("stored").GetInt32(), body.GetProperty("duplicates").GetInt32()));
        var rejected = body.GetProperty("rejected").EnumerateArray().ToArray();
        Assert.Equal([1, 3], rejected.Select(r => r.GetProperty("index").GetInt32()));
        Assert.Equal("validation_failed", rejected[0].GetProperty("code").GetString());
        Assert.Equal(["idempotency_id", "prompt_tokens"], rejected[0].GetProperty("errors").EnumerateObject().Select(p => p.Name).Order());
        Assert.Equal(("integration_not_found", "a-4"), (rejected[1].GetProperty("code").GetString(), rejected[1].GetProperty("idempotency_id").GetString()));

        var rows = await OwnerSql.QueryAsync<(string IdempotencyId, string Source, Guid? IntegrationId, string Provider, decimal CostCents,
            double LatencyMs, string Status, Guid? ApiKeyId, string? RunId)>(fixture.ConnectionString, """
            SELECT idempotency_id, source, integration_id, provider, cost_cents, latency_ms, status, api_key_id, run_id
            FROM llm_requests WHERE tenant_id = @Id ORDER BY idempotency_id
            """, new { tenant.Id });
        // gpt-4o at the list price: 1000 prompt tokens at 250 and 500 completion tokens at 1000 cents per million.
        Assert.Equal(("a-1", "telemetry", tenant.IntegrationId, "openai_compatible", 0.75m, 1500d, "completed", writerKeyId, "run-7"), rows[0]);
        Assert.Equal(("a-3", "telemetry", null, "anthropic", 2.5m, 800d, "failed", writerKeyId, null), rows[1]);
        Assert.Equal(2, rows.Count);

        // The integration's month counts the reported usage once; a retried batch adds nothing.
        var again = await JsonAsync(await writer.PostAsJsonAsync("/telemetry/llm-usage", batch));
        Assert.Equal((0, 3, 2), (again.GetProperty("stored").GetInt32(), again.GetProperty("duplicates").GetInt32(), again.GetProperty("rejected").GetArrayLength()));
        var month = await OwnerSql.QueryAsync<(long Requests, long Tokens)>(fixture.ConnectionString,
            "SELECT requests, tokens FROM llm_usage_months WHERE tenant_id = @Id", new { tenant.Id });
        Assert.Equal((1L, 1500L), Assert.Single(month));

        var listed = await JsonAsync(await tenant.Admin.GetAsync("/integrations/llm-requests?run_id=run-7"));
        var item = Assert.Single(listed.GetProperty("items").EnumerateArray());
        Assert.Equal(("telemetry", "a-1"), (item.GetProperty("source").GetString(), item.GetProperty("idempotency_id").GetString()));
        var audit = await JsonAsync(await tenant.Admin.GetAsync("/audit?action=telemetry.ingest"));
        Assert.Equal(2, audit.GetProperty("items").GetArrayLength());
    }

    [Fact]
    public async Task A_batch_must_hold_1_to_1000_records_and_needs_the_write_scope()
    {
        var (tenant, writer, _) = await TenantAsync();
        var record = new { idempotency_id = "x", provider = "openai", model = "gpt-4o", started_at = DateTimeOffset.UtcNow };

        var tooMany = await writer.PostAsJsonAsync("/telemetry/llm-usage", new { records = Enumerable.Repeat(record, 1001).ToArray() });
        var empty = await writer.PostAsJsonAsync("/telemetry/llm-usage", new { records = Array.Empty<object>() });
        var reader = await fixture.Factory.ClientForAsync(tenant.Id, Scopes.Read);
        var forbidden = await reader.PostAsJsonAsync("/telemetry/llm-usage", new { records = new[] { record } });

        Assert.Equal((HttpStatusCode.BadRequest, "validation_failed"), (tooMany.StatusCode, (await JsonAsync(tooMany)).GetProperty("code").GetString()));
        Assert.Equal(HttpStatusCode.BadRequest, empty.StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, forbidden.StatusCode);
        Assert.Empty(await OwnerSql.QueryAsync<Guid>(fixture.ConnectionString, "SELECT id FROM llm_requests WHERE tenant_id = @Id", new { tenant.Id }));

        var full = await JsonAsync(await writer.PostAsJsonAsync("/telemetry/llm-usage", new
        {
            records = Enumerable.Range(0, 1000).Select(i => new
            {
                idempotency_id = $"r-{i}",
                provider = "openai",
                model = "gpt-4o-mini",
                prompt_tokens = 100,
                started_at = DateTimeOffset.UtcNow.AddMinutes(-1)
            }).ToArray(),
        }));
        Assert.Equal(1000, full.GetProperty("stored").GetInt32());
    }

    [Fact]
    public async Task Another_tenants_integration_cannot_be_charged_and_a_record_from_the_future_is_refused()
    {
        var victim = await fixture.TenantAsync("victim-llm");
        var (_, writer, _) = await TenantAsync();

        var body = await JsonAsync(await writer.PostAsJsonAsync("/telemetry/llm-usage", new
        {
            records = new object[]
            {
                new { idempotency_id = "steal", integration_id = victim.IntegrationId, model = "gpt-4o", prompt_tokens = 1_000_000, started_at = DateTimeOffset.UtcNow },
                new { idempotency_id = "later", provider = "openai", model = "gpt-4o", started_at = DateTimeOffset.UtcNow.AddHours(1) },
            },
        }));

        Assert.Equal(0, body.GetProperty("stored").GetInt32());
        var rejected = body.GetProperty("rejected").EnumerateArray().ToArray();
        Assert.Equal(("integration_not_found", "validation_failed"), (rejected[0].GetProperty("code").GetString(), rejected[1].GetProperty("code").GetString()));
        Assert.True(rejected[1].GetProperty("errors").TryGetProperty("started_at", out _));
        Assert.Empty(await OwnerSql.QueryAsync<Guid>(fixture.ConnectionString,
            "SELECT id FROM llm_requests WHERE integration_id = @IntegrationId", new { victim.IntegrationId }));
    }
}
