using System.Text.Json;
using Integrations.Common;
using Integrations.Features.Telemetry;
using Integrations.Tests.LlmGateway;
using Integrations.Tests.Support;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Tests.Spend;

public sealed class CostAnomalyTests(LlmGatewayFixture fixture) : IClassFixture<LlmGatewayFixture>
{
    /// <summary>The hour judged: a whole UTC hour two days back, so the week before it is all in the past.</summary>
    private static readonly DateTimeOffset Hour = new DateTimeOffset(DateTime.UtcNow.Date, TimeSpan.Zero).AddDays(-2).AddHours(13);

    private sealed record Usage(DateTimeOffset At, decimal Cents, Guid? IntegrationId, Guid? KeyId = null, string Model = "gpt-4o", string? Run = null);

    /// <summary>Usage rows inserted as the owner in one statement, through the rollup trigger as any usage is.</summary>
    private Task<int> SpendAsync(string tenantId, IEnumerable<Usage> usage)
    {
        var rows = usage.ToArray();
        return OwnerSql.ExecuteAsync(fixture.ConnectionString, """
            INSERT INTO llm_requests (id, tenant_id, source, integration_id, api_key_id, caller, run_id, endpoint, requested_model,
                served_model, provider, prompt_tokens, completion_tokens, cost_cents, status, latency_ms, attempts, started_at, finished_at)
            SELECT gen_random_uuid(), @tenantId, 'telemetry', integration_id, key_id, 'test', run_id, 'chat.completions', model, model,
                   'openai', 100, 10, cents, 'completed', 500, 1, at, at + interval '1 second'
            FROM unnest(@ats, @cents, @integrations, @keys, @models, @runs) AS u(at, cents, integration_id, key_id, model, run_id)
            """, new
        {
            tenantId,
            ats = rows.Select(r => r.At).ToArray(),
            cents = rows.Select(r => r.Cents).ToArray(),
            integrations = rows.Select(r => r.IntegrationId).ToArray(),
            keys = rows.Select(r => r.KeyId).ToArray(),
            models = rows.Select(r => r.Model).ToArray(),
            runs = rows.Select(r => r.Run).ToArray(),
        });
    }

    /// <summary>The same hour on each of the 7 days before <see cref="Hour"/>: <paramref name="cents"/>(d) on day d back.</summary>
    private static IEnumerable<Usage> Week(Func<int, decimal> cents, Guid? integrationId, Guid? keyId = null) =>
        Enumerable.Range(1, 7).Select(d => new Usage(Hour.AddDays(-d).AddMinutes(10), cents(d), integrationId, keyId));

    private Task<int> JudgeAsync(DateTimeOffset hour) =>
        fixture.Factory.Services.GetRequiredService<CostAnomalies>().JudgeHourAsync(hour, CancellationToken.None);

    private static async Task<JsonElement[]> AnomaliesAsync(HttpClient admin)
    {
        var response = await admin.GetAsync("/incidents?kind=cost_anomaly");
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, text);
        return JsonDocument.Parse(text).RootElement.GetProperty("items").EnumerateArray().ToArray();
    }

    [Fact]
    public async Task A_steady_week_then_a_tenfold_hour_opens_one_incident_with_the_evidence_and_a_second_pass_adds_nothing()
    {
        var tenant = await fixture.TenantAsync();
        // 100 cents in this hour every day, and a daily batch of 5,000 cents three hours earlier that is not this hour's baseline.
        await SpendAsync(tenant.Id, Week(_ => 100m, tenant.IntegrationId)
            .Concat(Week(_ => 5000m, tenant.IntegrationId).Select(u => u with { At = u.At.AddHours(-3) })));
        await SpendAsync(tenant.Id,
        [
            new(Hour.AddMinutes(5), 600m, tenant.IntegrationId, Run: "run-big"),
            new(Hour.AddMinutes(6), 100m, tenant.IntegrationId, Run: "run-small"),
            new(Hour.AddMinutes(7), 300m, tenant.IntegrationId, Model: "gpt-4o-mini"),
        ]);

        await JudgeAsync(Hour);
        await JudgeAsync(Hour);

        var incident = Assert.Single(await AnomaliesAsync(tenant.Admin));
        Assert.Equal(("integration", tenant.IntegrationId.ToString(), 1, "high", "open"), (incident.GetProperty("subject_type").GetString(),
            incident.GetProperty("subject_id").GetString(), incident.GetProperty("occurrences").GetInt32(), incident.GetProperty("severity").GetString(),
            incident.GetProperty("status").GetString()));
        Assert.Contains("The integration 'llm' spent 1000 cents", incident.GetProperty("message").GetString());
        Assert.Contains("10× the 100 expected", incident.GetProperty("message").GetString());
        var evidence = incident.GetProperty("evidence");
        Assert.Equal((1000m, 100m, 10m, Hour, Hour.AddHours(1)), (evidence.GetProperty("observed_cents").GetDecimal(), evidence.GetProperty("expected_cents").GetDecimal(),
            evidence.GetProperty("ratio").GetDecimal(), evidence.GetProperty("window_from").GetDateTimeOffset(), evidence.GetProperty("window_to").GetDateTimeOffset()));
        Assert.Equal(Enumerable.Range(1, 7).Select(d => (Hour.AddDays(-d), 100m)), evidence.GetProperty("baseline").EnumerateArray()
            .Select(b => (b.GetProperty("from").GetDateTimeOffset(), b.GetProperty("cost_cents").GetDecimal())));
        Assert.Equal([("gpt-4o", 700m, 2L), ("gpt-4o-mini", 300m, 1L)], evidence.GetProperty("top_models").EnumerateArray()
            .Select(m => (m.GetProperty("name").GetString(), m.GetProperty("cost_cents").GetDecimal(), m.GetProperty("requests").GetInt64())));
        Assert.Equal([("run-big", 600m), ("run-small", 100m)], evidence.GetProperty("top_runs").EnumerateArray()
            .Select(r => (r.GetProperty("name").GetString(), r.GetProperty("cost_cents").GetDecimal())));
        Assert.Equal((3m, 500m), (evidence.GetProperty("minimum_ratio").GetDecimal(), evidence.GetProperty("minimum_excess_cents").GetDecimal()));

        // The next hour is anomalous too (nothing was ever spent in it): the open incident is bumped, not doubled.
        await SpendAsync(tenant.Id, [new(Hour.AddHours(1).AddMinutes(1), 800m, tenant.IntegrationId)]);
        await JudgeAsync(Hour.AddHours(1));
        await JudgeAsync(Hour.AddHours(1));
        var bumped = Assert.Single(await AnomaliesAsync(tenant.Admin));
        Assert.Equal((2, JsonValueKind.Null, 800m, Hour.AddHours(1)), (bumped.GetProperty("occurrences").GetInt32(),
            bumped.GetProperty("evidence").GetProperty("ratio").ValueKind, bumped.GetProperty("evidence").GetProperty("observed_cents").GetDecimal(),
            bumped.GetProperty("evidence").GetProperty("window_from").GetDateTimeOffset()));
        Assert.Contains("with 0 expected", bumped.GetProperty("message").GetString());
        Assert.Equal(2L, await OwnerSql.ScalarAsync<long>(fixture.ConnectionString,
            "SELECT count(*) FROM cost_anomalies WHERE tenant_id = @Id AND incident_id = @IncidentId",
            new { tenant.Id, IncidentId = bumped.GetProperty("id").GetGuid() }));
    }

    [Fact]
    public async Task A_steady_week_without_a_spike_opens_none_nor_does_a_new_integrations_first_dollar()
    {
        var tenant = await fixture.TenantAsync();
        var fresh = await tenant.IntegrationAsync("fresh");
        // Day to day 90-130 cents; this hour 250: 2.5× (under 3×).
        await SpendAsync(tenant.Id, Week(d => 90m + d * 5m, tenant.IntegrationId)
            .Append(new(Hour.AddMinutes(30), 250m, tenant.IntegrationId))
            .Append(new(Hour.AddMinutes(31), 100m, fresh)));

        await JudgeAsync(Hour);

        Assert.Empty(await AnomaliesAsync(tenant.Admin));
        Assert.Equal(0L, await OwnerSql.ScalarAsync<long>(fixture.ConnectionString, "SELECT count(*) FROM cost_anomalies WHERE tenant_id = @Id", new { tenant.Id }));

        // The first dollar is under the minimum excess; the same integration's 6 dollars in the next hour are not.
        await SpendAsync(tenant.Id, [new(Hour.AddHours(1).AddMinutes(1), 600m, fresh)]);
        await JudgeAsync(Hour.AddHours(1));
        var opened = Assert.Single(await AnomaliesAsync(tenant.Admin));
        Assert.Equal((fresh.ToString(), "medium"), (opened.GetProperty("subject_id").GetString(), opened.GetProperty("severity").GetString()));
    }

    [Fact]
    public async Task A_slow_ramp_stays_under_the_ratio_to_the_weeks_median_and_a_doubling_each_day_does_not()
    {
        var tenant = await fixture.TenantAsync();
        var doubling = await tenant.IntegrationAsync("doubling");
        // +20 % a day: 100 seven days back ... 298.6 yesterday, 358.3 now; the median (4 days back) is 172.8, so 2.07×.
        // Doubling: 10 ... 640 yesterday, 1,280 now; the median is 80, so 16×.
        await SpendAsync(tenant.Id, Week(d => Math.Round(100m * (decimal)Math.Pow(1.2, 7 - d), 1), tenant.IntegrationId)
            .Concat(Week(d => 10m * (decimal)Math.Pow(2, 7 - d), doubling))
            .Append(new(Hour.AddMinutes(1), 358.3m, tenant.IntegrationId))
            .Append(new(Hour.AddMinutes(2), 1280m, doubling)));

        await JudgeAsync(Hour);

        var opened = Assert.Single(await AnomaliesAsync(tenant.Admin));
        Assert.Equal(doubling.ToString(), opened.GetProperty("subject_id").GetString());
        Assert.Equal((80m, 16m), (opened.GetProperty("evidence").GetProperty("expected_cents").GetDecimal(),
            opened.GetProperty("evidence").GetProperty("ratio").GetDecimal()));
    }

    [Fact]
    public async Task An_API_keys_spike_is_its_own_anomaly_while_its_integration_looks_steady()
    {
        var tenant = await fixture.TenantAsync();
        var busy = await fixture.Factory.KeyForAsync(tenant.Id, Scopes.Write);
        var quiet = await fixture.Factory.KeyForAsync(tenant.Id, Scopes.Write);
        // The integration: 1,010 cents an hour all week, 1,600 now (1.6×); the quiet key: 10, then 600 (60×).
        await SpendAsync(tenant.Id, Week(_ => 1000m, tenant.IntegrationId, busy.Id).Concat(Week(_ => 10m, tenant.IntegrationId, quiet.Id))
            .Append(new(Hour.AddMinutes(1), 1000m, tenant.IntegrationId, busy.Id))
            .Append(new(Hour.AddMinutes(2), 600m, tenant.IntegrationId, quiet.Id, Run: "runaway-agent")));

        await JudgeAsync(Hour);

        var opened = Assert.Single(await AnomaliesAsync(tenant.Admin));
        Assert.Equal(("api_key", quiet.Id.ToString(), "high"), (opened.GetProperty("subject_type").GetString(), opened.GetProperty("subject_id").GetString(),
            opened.GetProperty("severity").GetString()));
        Assert.StartsWith("The API key 'test' spent 600 cents", opened.GetProperty("message").GetString());
        Assert.Equal("runaway-agent", opened.GetProperty("evidence").GetProperty("top_runs")[0].GetProperty("name").GetString());

        // Another tenant sees none of it.
        var other = await fixture.Factory.ClientForAsync(TestEnvironment.NewTenant(), Scopes.Read);
        Assert.Empty(await AnomaliesAsync(other));
    }

    [Fact]
    public void The_settings_default_to_3x_and_5_dollars_over_the_weeks_median_and_bad_ones_stop_start_up()
    {
        static CostAnomalyOptions Read(params (string Key, string Value)[] settings) => CostAnomalyOptions.FromConfiguration(new ConfigurationBuilder()
            .AddInMemoryCollection(settings.ToDictionary(s => $"{CostAnomalyOptions.Section}:{s.Key}", s => (string?)s.Value)).Build());

        var defaults = Read();
        Assert.Equal((3m, 500m, 7, TimeSpan.FromMinutes(5)), (defaults.Ratio, defaults.MinimumExcessCents, defaults.BaselineDays, defaults.Interval));
        Assert.Equal((2.5m, 0m, 14), (Read(("Ratio", "2.5"), ("MinimumExcessCents", "0"), ("BaselineDays", "14")) is var o ? (o.Ratio, o.MinimumExcessCents, o.BaselineDays) : default));
        Assert.Contains("Ratio must be above 1", Assert.Throws<InvalidOperationException>(() => Read(("Ratio", "1"))).Message);
        Assert.Contains("BaselineDays", Assert.Throws<InvalidOperationException>(() => Read(("BaselineDays", "0"))).Message);
        Assert.Contains("MinimumExcessCents", Assert.Throws<InvalidOperationException>(() => Read(("MinimumExcessCents", "-1"))).Message);
    }
}
