using Dapper;
using Integrations.Common;
using Integrations.Features.Incidents;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Workers;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Integrations.Features.Telemetry;

/// <summary>
/// Every <c>Integrations:Spend:BudgetAlertInterval</c> (default 1 minute; zero turns it off) opens a
/// <c>budget_threshold</c> incident for each budget — an integration's or an API key's cents or tokens per UTC month —
/// whose month's usage reached 80 %, and bumps the same incident when it reaches 100 %: each threshold once per budget
/// and month (<c>budget_alerts</c> remembers; across replicas too, its key refuses a second alert).
/// </summary>
public sealed class BudgetAlerts(
    IServiceScopeFactory scopes, NpgsqlDataSource dataSource, IncidentRecorder incidents, IConfiguration configuration, WorkerRegistry workers,
    ILogger<BudgetAlerts> logger) : BackgroundService
{
    public const string Actor = "system:budget-alerts";
    public const string WorkerName = "spend.budget_alerts";
    public const string Kind = "budget_threshold";

    private static readonly int[] BothThresholds = [80, 100];
    private static readonly int[] FirstThreshold = [80];

    private readonly TimeSpan _interval = configuration.GetValue("Integrations:Spend:BudgetAlertInterval", TimeSpan.FromMinutes(1));

    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        workers.RunEveryAsync(WorkerName, "Opens budget_threshold incidents at 80 % and 100 % of integrations' and keys' monthly budgets.",
            _interval, async ct => $"{await RunOnceAsync(ct)} budget thresholds alerted", stoppingToken);

    private sealed record Crossing(
        string TenantId, string SubjectType, Guid SubjectId, string Name, string Measure, DateOnly Month, decimal Budget, decimal Used, int Threshold);

    /// <summary>One pass across tenants; answers how many thresholds alerted.</summary>
    public async Task<int> RunOnceAsync(CancellationToken ct)
    {
        List<Crossing> crossings;
        await using (var connection = await dataSource.OpenConnectionAsync(ct))
        {
            crossings = (await connection.QueryAsync<Crossing>(new CommandDefinition(
                "SELECT * FROM budget_crossings(1000)", cancellationToken: ct))).AsList();
        }
        var alerted = 0;
        foreach (var crossing in crossings)
        {
            await using var scope = scopes.CreateAsyncScope();
            scope.ServiceProvider.GetRequiredService<CallerContext>()
                .Set(new Caller(crossing.TenantId, Actor, new HashSet<string>(), IsSystem: true));
            var session = scope.ServiceProvider.GetRequiredService<TenantSession>();
            var connection = await session.ConnectionAsync(ct);
            // 100 % reached before 80 % alerted: both are on record, one bump.
            var inserted = await connection.ExecuteAsync(new CommandDefinition("""
                INSERT INTO budget_alerts (tenant_id, subject_type, subject_id, measure, month, threshold)
                SELECT @TenantId, @SubjectType, @SubjectId, @Measure, @Month, t FROM unnest(@Thresholds) AS t
                ON CONFLICT DO NOTHING
                """, new
            {
                crossing.TenantId,
                crossing.SubjectType,
                crossing.SubjectId,
                crossing.Measure,
                crossing.Month,
                Thresholds = crossing.Threshold == 100 ? BothThresholds : FirstThreshold,
            }, cancellationToken: ct));
            if (inserted == 0) continue; // another replica alerted it
            var unit = crossing.Measure == "cents" ? "cents" : "tokens";
            var what = crossing.SubjectType == "integration" ? $"The integration '{crossing.Name}'" : $"The API key '{crossing.Name}'";
            await incidents.OpenOrBumpAsync(connection, crossing.TenantId, new IncidentReport(Kind, crossing.Threshold == 100 ? "high" : "medium",
                crossing.SubjectType, crossing.SubjectId.ToString(), $"{Kind}:{crossing.SubjectType}/{crossing.SubjectId}/{crossing.Measure}/{crossing.Month:yyyy-MM}",
                $"{what} has used {crossing.Used:0.####} of its {crossing.Budget:0} {unit} for {crossing.Month:yyyy-MM} ({crossing.Threshold} % reached)."), ct);
            await session.CommitAsync(ct);
            alerted++;
            logger.LogInformation("{Subject} {SubjectId} (tenant {TenantId}) reached {Threshold} % of its {Measure} budget.",
                crossing.SubjectType, crossing.SubjectId, crossing.TenantId, crossing.Threshold, crossing.Measure);
        }
        return alerted;
    }
}
