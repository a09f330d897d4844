using System.Net.Http.Json;
using System.Text.Json;
using Integrations.Common;
using Integrations.Features.Telemetry;
using Integrations.Tests.LlmGateway;
using Integrations.Tests.Support;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Tests.Spend;

public sealed class BudgetAlertTests(LlmGatewayFixture fixture) : IClassFixture<LlmGatewayFixture>
{
    private async Task ReportAsync(HttpClient writer, string id, decimal cents)
    {
        var response = await writer.PostAsJsonAsync("/telemetry/llm-usage", new
        {
            records = new[] { new { idempotency_id = id, integration = "llm", model = "gpt-4o", cost_cents = cents, started_at = DateTimeOffset.UtcNow } },
        });
        Assert.Equal(1, (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("stored").GetInt32());
    }

    private Task<List<(string Kind, string SubjectType, string SubjectId, int Occurrences, string Severity, string Message)>> IncidentsAsync(string tenantId) =>
        OwnerSql.QueryAsync<(string, string, string, int, string, string)>(fixture.ConnectionString,
            "SELECT kind, subject_type, subject_id, occurrences, severity, message FROM incidents WHERE tenant_id = @tenantId AND kind = 'budget_threshold' ORDER BY subject_type",
            new { tenantId });

    [Fact]
    public async Task Eighty_percent_opens_one_incident_a_later_pass_adds_nothing_and_a_hundred_percent_bumps_it_once()
    {
        var tenant = await fixture.TenantAsync(limits: new { budget_cents_per_month = 10 });
        var key = await fixture.Factory.KeyForAsync(tenant.Id, Scopes.Write);
        var setLimits = await tenant.Admin.PutAsJsonAsync($"/api-keys/{key.Id}/limits", new { limits = new { budget_cents_per_month = 100 } });
        Assert.True(setLimits.IsSuccessStatusCode);
        var writer = fixture.Factory.CreateClient();
        writer.DefaultRequestHeaders.Authorization = new("Bearer", key.Key);
        var alerts = fixture.Factory.Services.GetRequiredService<BudgetAlerts>();

        await ReportAsync(writer, "u-1", 7.9m);
        await alerts.RunOnceAsync(CancellationToken.None);
        Assert.Empty(await IncidentsAsync(tenant.Id)); // 79 %

        await ReportAsync(writer, "u-2", 0.1m);
        await alerts.RunOnceAsync(CancellationToken.None);
        await alerts.RunOnceAsync(CancellationToken.None);
        var opened = Assert.Single(await IncidentsAsync(tenant.Id));
        Assert.Equal(("integration", tenant.IntegrationId.ToString(), 1, "medium"), (opened.SubjectType, opened.SubjectId, opened.Occurrences, opened.Severity));
        Assert.Contains("80 % reached", opened.Message);

        await ReportAsync(writer, "u-3", 2.5m);
        await alerts.RunOnceAsync(CancellationToken.None);
        await alerts.RunOnceAsync(CancellationToken.None);
        var bumped = Assert.Single(await IncidentsAsync(tenant.Id));
        Assert.Equal(2, bumped.Occurrences);
        Assert.Contains("100 % reached", bumped.Message);

        // The key's own budget: 100 cents; straight past 100 % opens one incident, marked for both thresholds.
        await ReportAsync(writer, "u-4", 95m);
        await alerts.RunOnceAsync(CancellationToken.None);
        await alerts.RunOnceAsync(CancellationToken.None);
        var forKey = (await IncidentsAsync(tenant.Id)).Single(i => i.SubjectType == "api_key");
        Assert.Equal((key.Id.ToString(), 1, "high"), (forKey.SubjectId, forKey.Occurrences, forKey.Severity));
        Assert.Equal(2, await OwnerSql.ScalarAsync<long>(fixture.ConnectionString,
            "SELECT count(*) FROM budget_alerts WHERE tenant_id = @Id AND subject_type = 'api_key'", new { tenant.Id }));
    }
}
