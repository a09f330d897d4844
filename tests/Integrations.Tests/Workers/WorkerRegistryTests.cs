using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Integrations.Common;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Workers;
using Integrations.Tests.Support;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Logging.Abstractions;

namespace Integrations.Tests.Workers;

public sealed class WorkerRegistryTests(ApiFixture fixture) : IClassFixture<ApiFixture>
{
    private static readonly string[] Jobs =
    [
        "api_keys.last_used_flush", "audit.anchoring", "database.expired_rows_pruning", "datasources.stored_template_check",
        "governance.outcome_recovery", "integrations.health_sweep", "mcp_servers.health_sweep", "notifications.incidents", "spend.budget_alerts",
        "spend.cost_anomalies", "spend.run_hours_backfill",
    ];

    private static async Task<JsonElement> JsonAsync(HttpResponseMessage response) =>
        JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;

    [Fact]
    public async Task Every_job_is_listed_with_its_last_pass_and_a_job_whose_pass_fails_shows_its_error_and_keeps_running()
    {
        // The anchor file's path is a directory: every anchoring pass fails for real, writing into it.
        var anchorPath = Path.Combine(Path.GetTempPath(), "integrations-tests", $"anchor-dir-{Guid.NewGuid():N}");
        Directory.CreateDirectory(anchorPath);
        await using var api = fixture.Factory.WithWebHostBuilder(b => b
            .UseSetting("Integrations:Database:PruneInterval", "00:00:00.2")
            .UseSetting(AuditAnchoring.IntervalKey, "00:00:00.2")
            .UseSetting(AuditAnchorFile.PathKey, anchorPath));
        var tenant = TestEnvironment.NewTenant();
        var admin = await fixture.Factory.ClientForAsync(tenant, Scopes.Admin);
        // An audited change, so some chain head moved and the anchoring pass has something to write.
        Assert.Equal(HttpStatusCode.Created, (await admin.PostAsJsonAsync("/api-keys", new { name = "w", scopes = new[] { Scopes.Read } })).StatusCode);
        var client = api.CreateClient();
        client.DefaultRequestHeaders.Authorization = admin.DefaultRequestHeaders.Authorization;

        JsonElement[] workers = [];
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (DateTime.UtcNow < deadline)
        {
            workers = (await JsonAsync(await client.GetAsync("/workers"))).GetProperty("items").EnumerateArray().ToArray();
            var byName = workers.ToDictionary(w => w.GetProperty("name").GetString()!);
            if (byName.TryGetValue("database.expired_rows_pruning", out var p) && p.GetProperty("runs").GetInt64() >= 2
                && byName.TryGetValue("audit.anchoring", out var a) && a.GetProperty("failures").GetInt64() >= 2) break;
            await Task.Delay(100);
        }

        var names = workers.Select(w => w.GetProperty("name").GetString()).ToArray();
        Assert.Equal(Jobs, names); // by name, all of them
        var pruning = workers.Single(w => w.GetProperty("name").GetString() == "database.expired_rows_pruning");
        Assert.Equal("succeeded", pruning.GetProperty("last_outcome").GetString());
        Assert.Matches(@"^\d+ rate-limit windows, \d+ idempotency keys, \d+ evidence rows and \d+ process rows dropped$", pruning.GetProperty("last_result").GetString());
        Assert.Equal(0.2, pruning.GetProperty("interval_seconds").GetDouble());
        Assert.True(pruning.GetProperty("last_duration_ms").GetDouble() >= 0);
        Assert.True(pruning.GetProperty("next_run_at").GetDateTimeOffset() > pruning.GetProperty("last_finished_at").GetDateTimeOffset());

        var anchoring = workers.Single(w => w.GetProperty("name").GetString() == "audit.anchoring");
        Assert.Equal("failed", anchoring.GetProperty("last_outcome").GetString());
        Assert.StartsWith("UnauthorizedAccessException: ", anchoring.GetProperty("last_error").GetString());
        Assert.True(anchoring.GetProperty("runs").GetInt64() >= 2); // the job goes on after a failed pass
        Assert.Equal(JsonValueKind.Null, anchoring.GetProperty("last_result").ValueKind);

        var sweep = workers.Single(w => w.GetProperty("name").GetString() == "integrations.health_sweep");
        Assert.Equal(("off", JsonValueKind.Null), (sweep.GetProperty("status").GetString(), sweep.GetProperty("next_run_at").ValueKind));

        // Paged like every list.
        var paged = new List<string>();
        string? cursor = null;
        do
        {
            var page = await JsonAsync(await client.GetAsync($"/workers?limit=3{(cursor is null ? "" : $"&cursor={cursor}")}"));
            paged.AddRange(page.GetProperty("items").EnumerateArray().Select(w => w.GetProperty("name").GetString()!));
            cursor = page.GetProperty("next_cursor").GetString();
        }
        while (cursor is not null);
        Assert.Equal(names, paged);
    }

    [Fact]
    public async Task Listing_workers_needs_the_admin_scope()
    {
        var client = await fixture.Factory.ClientForAsync(TestEnvironment.NewTenant(), Scopes.Read, Scopes.Write);
        var response = await client.GetAsync("/workers");
        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await (await fixture.Factory.ClientForAsync(TestEnvironment.NewTenant(), Scopes.Admin))
            .GetAsync("/workers?limit=0")).StatusCode);
    }

    [Fact]
    public async Task A_failed_pass_keeps_its_error_after_a_later_success_and_stopping_ends_the_loop_without_a_failure()
    {
        var registry = new WorkerRegistry(TimeProvider.System, NullLogger<WorkerRegistry>.Instance);
        var passes = 0;
        using var stop = new CancellationTokenSource();
        var loop = registry.RunEveryAsync("test.job", "A test job.", TimeSpan.FromMilliseconds(20), async ct =>
        {
            passes++;
            if (passes == 1) throw new InvalidOperationException("first pass breaks");
            if (passes == 2) return "second pass done";
            await stop.CancelAsync();
            await Task.Delay(Timeout.Infinite, ct);
            return "unreached";
        }, stop.Token, startAtOnce: true);

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => loop);
        var job = Assert.Single(registry.List());
        Assert.Equal(("test.job", 2L, 1L), (job.Name, job.Runs, job.Failures)); // the pass cut short by stopping is not a run
        Assert.Equal(("succeeded", "second pass done"), (job.LastOutcome, job.LastResult));
        Assert.Equal("InvalidOperationException: first pass breaks", job.LastError);
        Assert.Equal("waiting", job.Status);
    }
}
