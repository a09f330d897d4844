using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Integrations.Common;
using Integrations.Features.Telemetry;
using Integrations.Tests.LlmGateway;
using Integrations.Tests.Support;

namespace Integrations.Tests.Spend;

public sealed class TelemetrySummaryTests(LlmGatewayFixture fixture) : IClassFixture<LlmGatewayFixture>
{
    private static async Task<JsonElement> JsonAsync(HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, text);
        return JsonDocument.Parse(text).RootElement;
    }

    private static readonly DateTimeOffset Hour = new(DateTimeOffset.UtcNow.UtcDateTime.Date.AddHours(DateTimeOffset.UtcNow.Hour - 3), TimeSpan.Zero);

    /// <summary>100 gpt-4o records at latencies 1..100 ms in one hour (run-a), 10 failed claude records the next hour (run-b).</summary>
    private async Task<(LlmGatewayFixture.Tenant Tenant, HttpClient Writer, Guid KeyId)> SeededAsync()
    {
        var tenant = await fixture.TenantAsync();
        var key = await fixture.Factory.KeyForAsync(tenant.Id, Scopes.Write, Scopes.Read);
        var writer = fixture.Factory.CreateClient();
        writer.DefaultRequestHeaders.Authorization = new("Bearer", key.Key);
        var records = Enumerable.Range(1, 100).Select(i => (object)new
        {
            idempotency_id = $"a-{i}",
            integration = "llm",
            model = "gpt-4o",
            prompt_tokens = 100,
            completion_tokens = 10,
            cost_cents = 1,
            latency_ms = i,
            started_at = Hour.AddSeconds(i),
            run_id = "run-a",
        }).Concat(Enumerable.Range(1, 10).Select(i => (object)new
        {
            idempotency_id = $"b-{i}",
            provider = "anthropic",
            model = "claude-haiku-4-5",
            prompt_tokens = 50,
            completion_tokens = 5,
            cost_cents = 3,
            latency_ms = 3000,
            started_at = Hour.AddHours(1).AddSeconds(i),
            run_id = "run-b",
            status = "failed",
        })).ToArray();
        Assert.Equal(110, (await JsonAsync(await writer.PostAsJsonAsync("/telemetry/llm-usage", new { records }))).GetProperty("stored").GetInt32());
        return (tenant, writer, key.Id);
    }

    private static string Range => $"from={Uri.EscapeDataString(Hour.ToString("O"))}&to={Uri.EscapeDataString(Hour.AddHours(2).ToString("O"))}";

    [Fact]
    public async Task Summaries_group_by_model_hour_run_and_key_with_tokens_cost_errors_and_latency_percentiles_from_the_buckets()
    {
        var (tenant, writer, keyId) = await SeededAsync();

        var byModel = (await JsonAsync(await writer.GetAsync($"/telemetry/summary?{Range}&group_by=integration,model"))).GetProperty("items").EnumerateArray().ToArray();
        Assert.Equal(2, byModel.Length);
        var gpt = byModel.Single(g => g.GetProperty("model").GetString() == "gpt-4o");
        Assert.Equal((100L, 0L, 11_000L, 100m, "llm", tenant.IntegrationId), (gpt.GetProperty("requests").GetInt64(), gpt.GetProperty("errors").GetInt64(),
            gpt.GetProperty("total_tokens").GetInt64(), gpt.GetProperty("cost_cents").GetDecimal(), gpt.GetProperty("integration_name").GetString(),
            gpt.GetProperty("integration_id").GetGuid()));
        // Latencies 1..100 ms: the true p50 is 50.5 and p95 95.5; the buckets (50-100 ms) give 51 and 96.
        Assert.Equal(51, gpt.GetProperty("latency_p50_ms").GetDouble(), 3);
        Assert.Equal(96, gpt.GetProperty("latency_p95_ms").GetDouble(), 3);
        var claude = byModel.Single(g => g.GetProperty("model").GetString() == "claude-haiku-4-5");
        Assert.Equal((10L, 30m, JsonValueKind.Null), (claude.GetProperty("errors").GetInt64(), claude.GetProperty("cost_cents").GetDecimal(),
            claude.GetProperty("integration_id").ValueKind));
        Assert.InRange(claude.GetProperty("latency_p50_ms").GetDouble(), 2000, 4000);

        var byHour = (await JsonAsync(await writer.GetAsync($"/telemetry/summary?{Range}&group_by=hour"))).GetProperty("items").EnumerateArray().ToArray();
        Assert.Equal([Hour, Hour.AddHours(1)], byHour.Select(g => g.GetProperty("period_start").GetDateTimeOffset()));
        var byDay = (await JsonAsync(await writer.GetAsync($"/telemetry/summary?{Range}&group_by=day,api_key"))).GetProperty("items").EnumerateArray().ToArray();
        Assert.Equal(110, byDay.Sum(g => g.GetProperty("requests").GetInt64()));
        Assert.All(byDay, g => Assert.Equal(keyId, g.GetProperty("api_key_id").GetGuid()));

        var byRun = await JsonAsync(await writer.GetAsync($"/telemetry/summary?{Range}&group_by=run&limit=1"));
        var first = Assert.Single(byRun.GetProperty("items").EnumerateArray());
        Assert.Equal("run-a", first.GetProperty("run_id").GetString()); // the costlier first
        var next = await JsonAsync(await writer.GetAsync($"/telemetry/summary?{Range}&group_by=run&limit=1&cursor={byRun.GetProperty("next_cursor").GetString()}"));
        Assert.Equal("run-b", Assert.Single(next.GetProperty("items").EnumerateArray()).GetProperty("run_id").GetString());
        Assert.Equal(JsonValueKind.Null, next.GetProperty("next_cursor").ValueKind);

        var oneRun = Assert.Single((await JsonAsync(await writer.GetAsync($"/telemetry/summary?{Range}&run_id=run-b"))).GetProperty("items").EnumerateArray());
        Assert.Equal(10, oneRun.GetProperty("requests").GetInt64());

        // Gateway calls land in the same rollups.
        Assert.Equal(HttpStatusCode.OK, (await tenant.Http().PostAsJsonAsync("/v1/chat/completions",
            new { model = "llm/gpt-4o-mini", messages = new[] { new { role = "user", content = "hi" } } })).StatusCode);
        var recent = (await JsonAsync(await writer.GetAsync("/telemetry/summary?group_by=model"))).GetProperty("items").EnumerateArray()
            .Where(g => g.GetProperty("model").GetString() is not ("gpt-4o" or "claude-haiku-4-5"));
        Assert.Equal(1, Assert.Single(recent).GetProperty("requests").GetInt64()); // under the model the provider answered with
    }

    [Fact]
    public async Task A_summary_reads_the_rollups_not_the_rows_and_sees_only_its_tenant()
    {
        var (tenant, writer, _) = await SeededAsync();
        var stranger = await fixture.Factory.ClientForAsync(TestEnvironment.NewTenant(), Scopes.Read);

        var strangers = Assert.Single((await JsonAsync(await stranger.GetAsync($"/telemetry/summary?{Range}"))).GetProperty("items").EnumerateArray());
        Assert.Equal(0, strangers.GetProperty("requests").GetInt64());

        await OwnerSql.ExecuteAsync(fixture.ConnectionString, "DELETE FROM llm_usage_hours WHERE tenant_id = @Id", new { tenant.Id });
        var afterwards = Assert.Single((await JsonAsync(await writer.GetAsync($"/telemetry/summary?{Range}"))).GetProperty("items").EnumerateArray());
        Assert.Equal(0, afterwards.GetProperty("requests").GetInt64());
        Assert.Equal(110, await OwnerSql.ScalarAsync<long>(fixture.ConnectionString, "SELECT count(*) FROM llm_requests WHERE tenant_id = @Id", new { tenant.Id }));
    }

    [Fact]
    public async Task Bad_groupings_and_ranges_are_400_naming_the_field()
    {
        var client = await fixture.Factory.ClientForAsync(TestEnvironment.NewTenant(), Scopes.Read);
        foreach (var query in new[] { "group_by=color", "group_by=day,hour", "from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
                     "from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", "limit=0", "cursor=zz" })
        {
            var response = await client.GetAsync($"/telemetry/summary?{query}");
            Assert.True(response.StatusCode == HttpStatusCode.BadRequest, query);
        }
    }

    [Fact]
    public void Percentiles_interpolate_within_a_bucket_and_the_open_bucket_answers_its_lower_bound()
    {
        Assert.Null(SummarizeLlmUsage.Percentile(new long[15], 0.5));
        var onlyOpen = new long[15];
        onlyOpen[14] = 3;
        Assert.Equal(120_000, SummarizeLlmUsage.Percentile(onlyOpen, 0.95));
        var firstBucket = new long[15];
        firstBucket[0] = 10;
        Assert.Equal(5, SummarizeLlmUsage.Percentile(firstBucket, 0.5));
    }
}
