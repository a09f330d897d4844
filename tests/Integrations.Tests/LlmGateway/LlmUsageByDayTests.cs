using Integrations.Features.LlmGateway;
using Integrations.Tests.Support;

namespace Integrations.Tests.LlmGateway;

/// <summary>llm_requests.by_day: the requests summed per UTC day (from the hour rollups), quiet days as zeros, one tenant's only.</summary>
public sealed class LlmUsageByDayTests(ServiceFixture fixture) : IClassFixture<ServiceFixture>
{
    private ServiceHost Host => fixture.Host;

    [Fact]
    public async Task Usage_is_summed_per_utc_day_with_quiet_days_as_zeros_and_only_the_tenants_own()
    {
        var tenant = TestEnvironment.NewTenant();
        var other = TestEnvironment.NewTenant();
        var today = DateTimeOffset.UtcNow.UtcDateTime.Date;
        var connection = Host.ConnectionString;
        await LlmRequestRows.InsertAsync(connection, tenant, today.AddMinutes(1), "completed", 1000, 200, 125m);
        await LlmRequestRows.InsertAsync(connection, tenant, today.AddMinutes(2), "completed", 10, 5, 0.5m);
        await LlmRequestRows.InsertAsync(connection, tenant, today.AddMinutes(3), "failed", 0, 0, 0m);
        await LlmRequestRows.InsertAsync(connection, tenant, today.AddDays(-3).AddHours(23).AddMinutes(59), "completed", 400, 100, 300m);
        await LlmRequestRows.InsertAsync(connection, tenant, today.AddDays(-7), "completed", 1, 1, 1m); // outside a 7-day window (the 8th day back)
        await LlmRequestRows.InsertAsync(connection, other, today.AddMinutes(4), "completed", 5000, 5000, 999m);

        var result = await Host.SendAsync(new ListLlmUsageByDay.Query(Days: 7), tenant);

        Assert.True(result.IsSuccess, result.Error?.Detail);
        var week = result.Value.Days;
        Assert.Equal(7, week.Count);
        Assert.Equal(DateOnly.FromDateTime(today), week[^1].Date);
        Assert.Equal(new ListLlmUsageByDay.Day(DateOnly.FromDateTime(today), 3, 1, 1010, 205, 125.5m), week[^1]);
        Assert.Equal(new ListLlmUsageByDay.Day(DateOnly.FromDateTime(today.AddDays(-3)), 1, 0, 400, 100, 300m), week[^4]);
        Assert.Equal(5, week.Count(d => d.Requests == 0));
        Assert.Equal(426.5m, (await Host.SendAsync(new ListLlmUsageByDay.Query(Days: 8), tenant)).Value.Days.Sum(d => d.CostCents));

        Assert.Equal("validation_failed", (await Host.SendAsync(new ListLlmUsageByDay.Query(Days: 93), tenant)).Error?.Code);
        Assert.Equal("validation_failed", (await Host.SendAsync(new ListLlmUsageByDay.Query(Days: 0), tenant)).Error?.Code);
    }

    [Fact]
    public async Task A_day_is_read_from_the_hour_rollups_not_the_request_rows_and_an_integration_filters_its_cells()
    {
        var tenant = TestEnvironment.NewTenant();
        var today = DateTimeOffset.UtcNow.UtcDateTime.Date;
        var connection = Host.ConnectionString;
        await LlmRequestRows.InsertAsync(connection, tenant, today.AddHours(1), "completed", 100, 20, 7m);
        await LlmRequestRows.InsertAsync(connection, tenant, today.AddHours(2), "denied", 0, 0, 0m);
        await LlmRequestRows.InsertAsync(connection, tenant, today.AddHours(3), "timeout", 0, 0, 0m);
        Assert.Equal(new ListLlmUsageByDay.Day(DateOnly.FromDateTime(today), 3, 2, 100, 20, 7m),
            (await Host.SendAsync(new ListLlmUsageByDay.Query(Days: 1), tenant)).Value.Days.Single());

        // Without its cells the day is quiet although its rows are all there; a cell without rows counts.
        await OwnerSql.ExecuteAsync(connection, "DELETE FROM llm_usage_hours WHERE tenant_id = @tenant", new { tenant });
        Assert.Equal(3, await OwnerSql.ScalarAsync<long>(connection, "SELECT count(*) FROM llm_requests WHERE tenant_id = @tenant", new { tenant }));
        Assert.Equal(0, (await Host.SendAsync(new ListLlmUsageByDay.Query(Days: 1), tenant)).Value.Days.Single().Requests);
        var integration = Guid.NewGuid();
        await OwnerSql.ExecuteAsync(connection, """
            INSERT INTO llm_usage_hours (tenant_id, hour, integration_id, model, api_key_id, requests, errors, denied, prompt_tokens,
                completion_tokens, cost_cents, latency)
            VALUES (@tenant, @hour, @integration, 'gpt-test', NULL, 5, 1, 0, 50, 10, 2.5, array_fill(0::bigint, ARRAY[15]))
            """, new { tenant, hour = today.AddHours(4), integration });
        Assert.Equal(5, (await Host.SendAsync(new ListLlmUsageByDay.Query(Days: 1), tenant)).Value.Days.Single().Requests);
        Assert.Equal(2.5m, (await Host.SendAsync(new ListLlmUsageByDay.Query(Days: 1, integration), tenant)).Value.Days.Single().CostCents);
        Assert.Equal(0, (await Host.SendAsync(new ListLlmUsageByDay.Query(Days: 1, Guid.NewGuid()), tenant)).Value.Days.Single().Requests);
    }
}

/// <summary>Gateway request rows for tests that read usage without running the gateway.</summary>
public static class LlmRequestRows
{
    /// <summary>A gateway request row as the LLM gateway writes it (inserted as the owner: the rows are append-only).</summary>
    public static Task InsertAsync(string connectionString, string tenant, DateTimeOffset at, string status, long prompt, long completion, decimal cents,
        Guid? integrationId = null) =>
        OwnerSql.ExecuteAsync(connectionString, """
            INSERT INTO llm_requests (id, tenant_id, integration_id, caller, endpoint, requested_model, status, prompt_tokens, completion_tokens,
                cost_cents, started_at, finished_at)
            VALUES (gen_random_uuid(), @tenant, @integrationId, 'test', 'chat.completions', 'llm/gpt-test', @status, @prompt, @completion, @cents, @at, @at)
            """, new { tenant, integrationId, at = at.UtcDateTime, status, prompt, completion, cents });
}
