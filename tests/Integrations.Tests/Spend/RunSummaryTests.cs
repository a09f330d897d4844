using System.Net.Http.Json;
using System.Text.Json;
using Integrations.Common;
using Integrations.Features.LlmGateway;
using Integrations.Features.Telemetry;
using Integrations.Infrastructure.Database;
using Integrations.Tests.LlmGateway;
using Integrations.Tests.Support;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;

namespace Integrations.Tests.Spend;

/// <summary>
/// Summaries grouped by run (migration 0037's <c>llm_run_hours</c>, and <c>llm_usage_run_hours</c> when the integration,
/// model or key is asked about too) against a direct aggregate of the usage rows.
/// </summary>
public sealed class RunSummaryTests(LlmGatewayFixture fixture) : IClassFixture<LlmGatewayFixture>
{
    private static readonly DateTimeOffset Now = DateTimeOffset.UtcNow;
    private static readonly DateTimeOffset FirstHour = new(Now.UtcDateTime.Date.AddHours(Now.Hour - 4), TimeSpan.Zero);
    // Two hours on: the gateway's calls are in the hour they are made, which may be the next by then.
    private static readonly DateTimeOffset End = new(Now.UtcDateTime.Date.AddHours(Now.Hour + 2), TimeSpan.Zero);

    private sealed record Figures(string Run, DateTimeOffset? Hour, long Requests, long Errors, long Denied, long Prompt, long Completion, decimal Cost, double? P50, double? P95);

    private sealed class RawRow
    {
        public string RunId { get; init; } = "";
        public DateTime? Hour { get; init; }
        public long Requests { get; init; }
        public long Errors { get; init; }
        public long Denied { get; init; }
        public long Prompt { get; init; }
        public long Completion { get; init; }
        public decimal Cost { get; init; }
        public long[] Latency { get; init; } = [];
    }

    private sealed record Seeded(LlmGatewayFixture.Tenant Tenant, HttpClient Reader, HttpClient Writer, Guid WriterKey, Guid OtherKey, HttpClient Other);

    /// <summary>
    /// Runs a-c over four hours, each run's requests changing model, key, integration (or none: a provider only) and
    /// status as they go, so a run's hour is many cells of the detailed rollup; and gateway calls of runs a and g in
    /// this hour, one of them denied.
    /// </summary>
    private async Task<Seeded> SeededAsync()
    {
        var tenant = await fixture.TenantAsync(limits: new { requests_per_minute = 3 });
        var writerKey = await fixture.Factory.KeyForAsync(tenant.Id, Scopes.Write, Scopes.Read);
        var otherKey = await fixture.Factory.KeyForAsync(tenant.Id, Scopes.Write);
        var writer = fixture.Factory.CreateClient();
        writer.DefaultRequestHeaders.Authorization = new("Bearer", writerKey.Key);
        var other = fixture.Factory.CreateClient();
        other.DefaultRequestHeaders.Authorization = new("Bearer", otherKey.Key);

        await IngestAsync(writer, Records("w", 0, 120, i => i % 2 == 0));
        await IngestAsync(other, Records("o", 0, 80, _ => true));
        await CallGatewayAsync(tenant, "run-a", "run-g", "run-g", "run-g"); // the fourth is over the limit: denied
        await tenant.UsageAsync(204);
        return new Seeded(tenant, writer, writer, writerKey.Id, otherKey.Id, other);
    }

    private static object[] Records(string prefix, int from, int count, Func<int, bool> withIntegration) =>
        Enumerable.Range(from, count).Select(i => (object)new
        {
            idempotency_id = $"{prefix}-{i}",
            integration = withIntegration(i) ? "llm" : null,
            provider = withIntegration(i) ? null : "anthropic",
            model = (i / 3 % 3) switch { 0 => "gpt-4o", 1 => "gpt-4o-mini", _ => "claude-haiku-4-5" },
            prompt_tokens = 100 + i,
            completion_tokens = 10 + i % 7,
            cost_cents = 0.25m * (1 + i % 5),
            latency_ms = 5 + i * 37 % 4000,
            started_at = FirstHour.AddHours(i % 4).AddMinutes(i % 50),
            run_id = $"run-{(char)('a' + i % 3)}",
            status = i % 11 == 0 ? "failed" : i % 13 == 0 ? "timeout" : "completed",
        }).ToArray();

    private static async Task IngestAsync(HttpClient client, object[] records)
    {
        var response = await client.PostAsJsonAsync("/telemetry/llm-usage", new { records });
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, body);
        Assert.Equal(records.Length, JsonDocument.Parse(body).RootElement.GetProperty("stored").GetInt32());
    }

    private static async Task CallGatewayAsync(LlmGatewayFixture.Tenant tenant, params string[] runs)
    {
        var client = tenant.Http();
        foreach (var run in runs)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
            {
                Content = JsonContent.Create(new { model = "llm/gpt-4o-mini", messages = new[] { new { role = "user", content = "hi" } } }),
            };
            request.Headers.Add(InvokeLlm.RunIdHeader, run);
            (await client.SendAsync(request)).Dispose();
        }
    }

    private static string Range(DateTimeOffset from, DateTimeOffset to) =>
        $"from={Uri.EscapeDataString(from.ToString("O"))}&to={Uri.EscapeDataString(to.ToString("O"))}";

    private static async Task<List<Figures>> SummaryAsync(HttpClient reader, string query)
    {
        var response = await reader.GetAsync($"/telemetry/summary?{query}&limit=1000");
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, text);
        var root = JsonDocument.Parse(text).RootElement;
        Assert.Equal(JsonValueKind.Null, root.GetProperty("next_cursor").ValueKind);
        return root.GetProperty("items").EnumerateArray()
            .Where(g => g.GetProperty("requests").GetInt64() > 0) // no grouping and no usage: one row of zeros
            .Select(g => new Figures(
                g.GetProperty("run_id").GetString() ?? "", g.GetProperty("period_start").ValueKind == JsonValueKind.Null ? null : g.GetProperty("period_start").GetDateTimeOffset(),
                g.GetProperty("requests").GetInt64(), g.GetProperty("errors").GetInt64(), g.GetProperty("denied").GetInt64(),
                g.GetProperty("prompt_tokens").GetInt64(), g.GetProperty("completion_tokens").GetInt64(), g.GetProperty("cost_cents").GetDecimal(),
                g.GetProperty("latency_p50_ms").ValueKind == JsonValueKind.Null ? null : Math.Round(g.GetProperty("latency_p50_ms").GetDouble(), 6),
                g.GetProperty("latency_p95_ms").ValueKind == JsonValueKind.Null ? null : Math.Round(g.GetProperty("latency_p95_ms").GetDouble(), 6)))
            .OrderBy(f => f.Run, StringComparer.Ordinal).ThenBy(f => f.Hour).ToList();
    }

    /// <summary>The same figures straight from the tenant's usage rows (<paramref name="where"/>: extra conditions on them).</summary>
    private async Task<List<Figures>> DirectAsync(string tenantId, DateTimeOffset from, DateTimeOffset to, bool byHour, string where = "", object? args = null)
    {
        var parameters = new Dapper.DynamicParameters(args);
        parameters.AddDynamicParams(new { TenantId = tenantId, From = from.UtcDateTime, To = to.UtcDateTime });
        var rows = await OwnerSql.QueryAsync<RawRow>(fixture.ConnectionString, $"""
            SELECT run_id AS RunId, {(byHour ? "date_trunc('hour', started_at, 'UTC')" : "NULL::timestamptz")} AS Hour, count(*) AS Requests,
                   count(*) FILTER (WHERE status IN ('failed', 'timeout')) AS Errors, count(*) FILTER (WHERE status = 'denied') AS Denied,
                   sum(prompt_tokens) AS Prompt, sum(completion_tokens) AS Completion, COALESCE(sum(cost_cents), 0) AS Cost,
                   ARRAY[{string.Join(", ", Enumerable.Range(1, 15).Select(b => $"count(*) FILTER (WHERE b = {b})"))}] AS Latency
            FROM (SELECT *, CASE WHEN status = 'denied' THEN 0 ELSE llm_latency_bucket(latency_ms) END AS b FROM llm_requests) r
            WHERE tenant_id = @TenantId AND run_id IS NOT NULL AND started_at >= @From AND started_at < @To {where}
            GROUP BY 1, 2
            """, parameters);
        return rows.Select(r => new Figures(r.RunId, r.Hour is { } h ? new DateTimeOffset(DateTime.SpecifyKind(h, DateTimeKind.Utc)) : null,
                r.Requests, r.Errors, r.Denied, r.Prompt, r.Completion, r.Cost,
                Round(SummarizeLlmUsage.Percentile(r.Latency, 0.5)), Round(SummarizeLlmUsage.Percentile(r.Latency, 0.95))))
            .OrderBy(f => f.Run, StringComparer.Ordinal).ThenBy(f => f.Hour).ToList();
    }

    private static double? Round(double? value) => value is { } v ? Math.Round(v, 6) : null;

    private async Task AssertSummariesEqualTheRowsAsync(Seeded s)
    {
        var id = s.Tenant.Id;
        var all = Range(FirstHour, End);
        var byRun = await DirectAsync(id, FirstHour, End, byHour: false);
        Assert.Equal(["run-a", "run-b", "run-c", "run-g"], byRun.Select(f => f.Run));
        Assert.Equal(byRun, await SummaryAsync(s.Reader, $"{all}&group_by=run"));
        Assert.Equal(await DirectAsync(id, FirstHour, End, byHour: true), await SummaryAsync(s.Reader, $"{all}&group_by=run,hour"));

        // A range of two of the four hours counts only their cells.
        Assert.Equal(await DirectAsync(id, FirstHour.AddHours(1), FirstHour.AddHours(3), byHour: false),
            await SummaryAsync(s.Reader, $"{Range(FirstHour.AddHours(1), FirstHour.AddHours(3))}&group_by=run"));

        // One run, without a grouping.
        var runB = (await DirectAsync(id, FirstHour, End, byHour: false, "AND run_id = 'run-b'")).Single() with { Run = "" };
        Assert.Equal([runB], await SummaryAsync(s.Reader, $"{all}&run_id=run-b"));

        // Filtered by model, key or integration: from the detailed rollup, equal all the same.
        Assert.Equal(await DirectAsync(id, FirstHour, End, false, "AND COALESCE(served_model, requested_model) = 'gpt-4o-mini'"),
            await SummaryAsync(s.Reader, $"{all}&group_by=run&model=gpt-4o-mini"));
        Assert.Equal(await DirectAsync(id, FirstHour, End, false, "AND api_key_id = @Key", new { Key = s.OtherKey }),
            await SummaryAsync(s.Reader, $"{all}&group_by=run&api_key_id={s.OtherKey}"));
        Assert.Equal(await DirectAsync(id, FirstHour, End, true, "AND integration_id = @Integration", new { Integration = s.Tenant.IntegrationId }),
            await SummaryAsync(s.Reader, $"{all}&group_by=run,hour&integration_id={s.Tenant.IntegrationId}"));
        Assert.Equal(await DirectAsync(id, FirstHour, End, false, "AND run_id = 'run-a' AND api_key_id = @Key", new { Key = s.WriterKey }),
            (await SummaryAsync(s.Reader, $"{all}&run_id=run-a&api_key_id={s.WriterKey}")).Select(f => f with { Run = "run-a" }));
    }

    [Fact]
    public async Task Summaries_by_run_equal_a_direct_aggregate_of_the_rows_with_and_without_filters_over_several_hours_and_sources()
    {
        var s = await SeededAsync();
        var sources = await OwnerSql.QueryAsync<string>(fixture.ConnectionString,
            "SELECT DISTINCT source || '/' || status FROM llm_requests WHERE tenant_id = @Id ORDER BY 1", new { s.Tenant.Id });
        Assert.Equal(["gateway/completed", "gateway/denied", "telemetry/completed", "telemetry/failed", "telemetry/timeout"], sources);
        await AssertSummariesEqualTheRowsAsync(s);

        // The run rollup rolls up: one cell per run and hour, where the detailed one keeps model, key and integration apart.
        var cells = (await OwnerSql.QueryAsync<(long Runs, long Detailed)>(fixture.ConnectionString, """
            SELECT (SELECT count(*) FROM llm_run_hours WHERE tenant_id = @Id), (SELECT count(*) FROM llm_usage_run_hours WHERE tenant_id = @Id)
            """, new { s.Tenant.Id })).Single();
        Assert.Equal((await DirectAsync(s.Tenant.Id, FirstHour, End, byHour: true)).Count, cells.Runs);
        Assert.True(cells.Detailed > 3 * cells.Runs, $"{cells.Detailed} detailed cells, {cells.Runs} run cells");
    }

    [Fact]
    public async Task A_summary_by_run_alone_reads_the_run_rollup_and_one_that_names_a_model_key_or_integration_reads_the_detailed_one()
    {
        var s = await SeededAsync();
        var all = Range(FirstHour, End);
        var byRun = await SummaryAsync(s.Reader, $"{all}&group_by=run");

        await OwnerSql.ExecuteAsync(fixture.ConnectionString, "DELETE FROM llm_usage_run_hours WHERE tenant_id = @Id", new { s.Tenant.Id });
        Assert.Equal(byRun, await SummaryAsync(s.Reader, $"{all}&group_by=run"));
        Assert.Equal(byRun.Single(f => f.Run == "run-c") with { Run = "" }, Assert.Single(await SummaryAsync(s.Reader, $"{all}&run_id=run-c")));
        Assert.Empty(await SummaryAsync(s.Reader, $"{all}&group_by=run&model=gpt-4o"));
        Assert.Empty(await SummaryAsync(s.Reader, $"{all}&group_by=run,model"));

        await OwnerSql.ExecuteAsync(fixture.ConnectionString, "DELETE FROM llm_run_hours WHERE tenant_id = @Id", new { s.Tenant.Id });
        Assert.Empty(await SummaryAsync(s.Reader, $"{all}&group_by=run"));
        Assert.NotEmpty(await SummaryAsync(s.Reader, $"{all}&group_by=model")); // the hour rollup is untouched
    }

    [Fact]
    public async Task A_tenant_whose_usage_predates_the_run_rollup_reads_the_detailed_one_until_the_backfill_and_then_the_same_figures()
    {
        var s = await SeededAsync();
        var backfill = fixture.Factory.Services.GetRequiredService<RunHoursBackfill>();
        // As migration 0037 leaves a tenant with earlier usage: run cells in the detailed rollup only, the tenant pending.
        await OwnerSql.ExecuteAsync(fixture.ConnectionString, """
            DELETE FROM llm_run_hours WHERE tenant_id = @Id;
            INSERT INTO llm_run_hours_pending (tenant_id) VALUES (@Id);
            """, new { s.Tenant.Id });
        await AssertSummariesEqualTheRowsAsync(s);

        // Usage written while pending is in both rollups; the backfill recomputes, so it counts once. Writes go on
        // while the backfill runs.
        await IngestAsync(s.Writer, Records("w", 120, 30, _ => true));
        var writes = Task.WhenAll(Enumerable.Range(0, 4).Select(b => IngestAsync(b % 2 == 0 ? s.Writer : s.Other, Records($"c{b}", 0, 40, i => i % 3 != 0))));
        Assert.True(await backfill.RunOnceAsync(CancellationToken.None) >= 1);
        await writes;
        Assert.Equal(0, await OwnerSql.ScalarAsync<long>(fixture.ConnectionString,
            "SELECT count(*) FROM llm_run_hours_pending WHERE tenant_id = @Id", new { s.Tenant.Id }));
        Assert.Equal(0, await backfill.RunOnceAsync(CancellationToken.None));
        await AssertSummariesEqualTheRowsAsync(s);

        // From its own rollup now: without the detailed one, summaries by run alone still answer.
        var expected = await DirectAsync(s.Tenant.Id, FirstHour, End, byHour: false);
        await OwnerSql.ExecuteAsync(fixture.ConnectionString, "DELETE FROM llm_usage_run_hours WHERE tenant_id = @Id", new { s.Tenant.Id });
        Assert.Equal(expected, await SummaryAsync(s.Reader, $"{Range(FirstHour, End)}&group_by=run"));
    }

    [Fact]
    public async Task A_pending_tenants_writes_wait_for_its_backfill_batch_and_count_once_and_other_tenants_writes_do_not_wait()
    {
        var s = await SeededAsync();
        var other = await SeededAsync();
        var ids = new[] { s.Tenant.Id, other.Tenant.Id };
        await OwnerSql.ExecuteAsync(fixture.ConnectionString, """
            DELETE FROM llm_run_hours WHERE tenant_id = ANY (@ids);
            INSERT INTO llm_run_hours_pending (tenant_id) SELECT unnest(@ids);
            """, new { ids });

        // A batch for the first tenant, held open: its lock is taken, its cells not yet copied.
        await using var batch = new Npgsql.NpgsqlConnection(fixture.ConnectionString);
        await batch.OpenAsync();
        await using var tx = await batch.BeginTransactionAsync();
        await using (var take = new Npgsql.NpgsqlCommand("SELECT pg_advisory_xact_lock(37, hashtext(@id))", batch, tx))
        {
            take.Parameters.AddWithValue("id", s.Tenant.Id);
            await take.ExecuteNonQueryAsync();
        }
        var waiting = IngestAsync(s.Writer, Records("held", 0, 20, _ => true));
        await IngestAsync(other.Writer, Records("free", 0, 20, _ => true)); // another pending tenant's write goes through
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.False(waiting.IsCompleted);

        // The batch copies what is committed and commits; the held write then lands in both rollups.
        await using (var copy = new Npgsql.NpgsqlCommand("SELECT llm_run_hours_backfill(100)", batch, tx))
        {
            Assert.True((int)(await copy.ExecuteScalarAsync())! >= 2);
        }
        await tx.CommitAsync();
        await waiting;
        await AssertSummariesEqualTheRowsAsync(s);
        await AssertSummariesEqualTheRowsAsync(other);
        await OwnerSql.ExecuteAsync(fixture.ConnectionString, "DELETE FROM llm_usage_run_hours WHERE tenant_id = ANY (@ids)", new { ids });
        Assert.Equal(await DirectAsync(s.Tenant.Id, FirstHour, End, byHour: false), await SummaryAsync(s.Reader, $"{Range(FirstHour, End)}&group_by=run"));
    }

    [Fact]
    public async Task Migration_0037_lists_the_tenants_with_earlier_run_usage_and_the_backfill_fills_their_run_cells_once()
    {
        var db = await TestEnvironment.CreateDatabaseAsync("m37");
        await using (var dataSource = Npgsql.NpgsqlDataSource.Create(db))
        {
            var runner = new MigrationRunner(dataSource, NullLogger<MigrationRunner>.Instance);
            await runner.RunAsync(CancellationToken.None, through: "0036");
            // Usage of three tenants before the migration, in two statements; the third's has no run.
            await OwnerSql.ExecuteAsync(db, UsageSql, new { Tenants = new[] { "m-a", "m-b" }, Runs = true, Salt = 0 });
            await OwnerSql.ExecuteAsync(db, UsageSql, new { Tenants = new[] { "m-a", "m-c" }, Runs = false, Salt = 1 });
            await runner.RunAsync(CancellationToken.None);
        }
        Assert.Equal(["m-a", "m-b"], await OwnerSql.QueryAsync<string>(db, "SELECT tenant_id FROM llm_run_hours_pending ORDER BY 1"));
        Assert.Equal(0, await OwnerSql.ScalarAsync<long>(db, "SELECT count(*) FROM llm_run_hours"));

        // A write after the migration, before the backfill: in both rollups, counted once after it.
        await OwnerSql.ExecuteAsync(db, UsageSql, new { Tenants = new[] { "m-a" }, Runs = true, Salt = 2 });
        var batches = new List<int>();
        for (var i = 0; i < 3; i++) batches.Add(await OwnerSql.ScalarAsync<int>(db, "SELECT llm_run_hours_backfill(1)"));
        Assert.Equal([1, 1, 0], batches);
        var differences = await OwnerSql.ScalarAsync<long>(db, """
            WITH direct AS (
                SELECT tenant_id, date_trunc('hour', started_at) AS hour, run_id, count(*) AS requests, sum(prompt_tokens) AS prompt_tokens,
                       sum(cost_cents) AS cost_cents, count(*) FILTER (WHERE status = 'failed') AS errors
                FROM llm_requests WHERE run_id IS NOT NULL GROUP BY 1, 2, 3),
            rollup AS (SELECT tenant_id, hour, run_id, requests, prompt_tokens, cost_cents, errors FROM llm_run_hours)
            SELECT (SELECT count(*) FROM (TABLE direct EXCEPT TABLE rollup) a) + (SELECT count(*) FROM (TABLE rollup EXCEPT TABLE direct) b)
            """);
        Assert.Equal(0, differences);
        Assert.True(await OwnerSql.ScalarAsync<long>(db, "SELECT count(*) FROM llm_run_hours WHERE tenant_id = 'm-a'") > 0);
    }

    // 40 rows a tenant over 4 hours, runs of 10 whose requests change model and key (when Runs), some failed.
    private const string UsageSql = """
        INSERT INTO llm_requests (id, tenant_id, source, api_key_id, caller, run_id, endpoint, requested_model, served_model, provider,
            prompt_tokens, completion_tokens, cost_cents, status, latency_ms, attempts, started_at, finished_at)
        SELECT gen_random_uuid(), t, 'telemetry', md5(t || (k % 3))::uuid, 'test', CASE WHEN @Runs THEN 'run-' || (k / 10) END,
               'chat.completions', m, m, 'openai', 100 + k + @Salt, 10, (k % 5 + 1) * 0.5, CASE WHEN k % 7 = 0 THEN 'failed' ELSE 'completed' END,
               50 + k * 13, 1, date_trunc('hour', now()) - interval '4 hours' + k * interval '6 minutes', now()
        FROM unnest(@Tenants::text[]) AS t, generate_series(0, 39) AS k,
             LATERAL (SELECT (ARRAY['gpt-4o', 'gpt-4o-mini'])[k % 2 + 1] AS m) AS v
        """;

    [Fact]
    public async Task A_pending_tenants_summary_by_run_from_the_detailed_rollup_sees_only_that_tenant()
    {
        var s = await SeededAsync();
        var strangerId = TestEnvironment.NewTenant();
        var stranger = await fixture.Factory.ClientForAsync(strangerId, Scopes.Read);
        var ids = new[] { s.Tenant.Id, strangerId };
        await OwnerSql.ExecuteAsync(fixture.ConnectionString, """
            DELETE FROM llm_run_hours WHERE tenant_id = @Id;
            INSERT INTO llm_run_hours_pending (tenant_id) SELECT unnest(@ids);
            """, new { s.Tenant.Id, ids });
        try
        {
            Assert.Empty(await SummaryAsync(stranger, $"{Range(FirstHour, End)}&group_by=run"));
            Assert.Equal(await DirectAsync(s.Tenant.Id, FirstHour, End, byHour: false), await SummaryAsync(s.Reader, $"{Range(FirstHour, End)}&group_by=run"));
        }
        finally
        {
            await OwnerSql.ExecuteAsync(fixture.ConnectionString, "DELETE FROM llm_run_hours_pending WHERE tenant_id = ANY (@ids)", new { ids });
        }
    }
}
