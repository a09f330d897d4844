using System.Globalization;
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
/// Every <see cref="CostAnomalyOptions.Interval"/> judges the last complete UTC hour of every integration's and every
/// API key's spend against its baseline (<see cref="CostAnomalyOptions"/>), read from the hour rollups, and opens a
/// <c>cost_anomaly</c> incident per anomalous subject with the evidence: observed, expected, ratio, window, the
/// baseline's hours, the top models and runs. One open incident per subject: a later anomalous hour bumps it; the same
/// hour never counts twice (<c>cost_anomalies</c> remembers, across replicas too).
/// </summary>
public sealed class CostAnomalies(
    IServiceScopeFactory scopes, NpgsqlDataSource dataSource, IncidentRecorder incidents, IConfiguration configuration, WorkerRegistry workers,
    TimeProvider time, ILogger<CostAnomalies> logger) : BackgroundService
{
    public const string Actor = "system:cost-anomalies";
    public const string WorkerName = "spend.cost_anomalies";
    public const string Kind = "cost_anomaly";

    private const int TopCount = 5;

    /// <summary>At or above this ratio an anomaly is severity high, below it medium.</summary>
    private const decimal HighRatio = 10m;

    private readonly CostAnomalyOptions _options = CostAnomalyOptions.FromConfiguration(configuration);

    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        workers.RunEveryAsync(WorkerName, "Opens cost_anomaly incidents for integrations' and keys' hours far above the same hour of the days before.",
            _options.Interval, async ct => $"{await RunOnceAsync(ct)} cost anomalies found", stoppingToken);

    /// <summary>One pass over the last complete UTC hour; answers how many anomalies it recorded.</summary>
    public Task<int> RunOnceAsync(CancellationToken ct)
    {
        var now = time.GetUtcNow();
        return JudgeHourAsync(new DateTimeOffset(now.Year, now.Month, now.Day, now.Hour, 0, 0, TimeSpan.Zero).AddHours(-1), ct);
    }

    // A class, not a positional record: Dapper sees a numeric[] column as System.Array when matching a constructor.
    private sealed class Candidate
    {
        public required string TenantId { get; init; }
        public required string SubjectType { get; init; }
        public Guid SubjectId { get; init; }
        public required string Name { get; init; }
        public decimal ObservedCents { get; init; }
        public decimal ExpectedCents { get; init; }
        public decimal[] BaselineCents { get; init; } = [];
    }

    public sealed record Spender(string Name, decimal CostCents, long Requests);

    public sealed record BaselineHour(DateTimeOffset From, decimal CostCents);

    /// <summary>What a <c>cost_anomaly</c> incident carries (its <c>evidence</c>).</summary>
    public sealed record Evidence(
        string SubjectType, Guid SubjectId, string Name, DateTimeOffset WindowFrom, DateTimeOffset WindowTo, decimal ObservedCents,
        decimal ExpectedCents, decimal? Ratio, string Method, IReadOnlyList<BaselineHour> Baseline, decimal MinimumRatio,
        decimal MinimumExcessCents, IReadOnlyList<Spender> TopModels, IReadOnlyList<Spender> TopRuns);

    /// <summary>Judges the hour starting at <paramref name="hour"/> (a whole UTC hour); answers how many anomalies it recorded.</summary>
    public async Task<int> JudgeHourAsync(DateTimeOffset hour, CancellationToken ct)
    {
        List<Candidate> candidates;
        await using (var connection = await dataSource.OpenConnectionAsync(ct))
        {
            candidates = (await connection.QueryAsync<Candidate>(new CommandDefinition(
                "SELECT * FROM cost_anomaly_candidates(@Hour, @Days, @Ratio, @MinimumExcessCents, 1000)",
                new { Hour = hour, Days = _options.BaselineDays, _options.Ratio, _options.MinimumExcessCents }, cancellationToken: ct))).AsList();
        }
        var found = 0;
        foreach (var candidate in candidates)
        {
            await using var scope = scopes.CreateAsyncScope();
            scope.ServiceProvider.GetRequiredService<CallerContext>()
                .Set(new Caller(candidate.TenantId, Actor, new HashSet<string>(), IsSystem: true));
            var session = scope.ServiceProvider.GetRequiredService<TenantSession>();
            var connection = await session.ConnectionAsync(ct);
            var args = new { candidate.TenantId, candidate.SubjectType, candidate.SubjectId, Hour = hour, candidate.ObservedCents, candidate.ExpectedCents };
            var inserted = await connection.ExecuteAsync(new CommandDefinition("""
                INSERT INTO cost_anomalies (tenant_id, subject_type, subject_id, hour, observed_cents, expected_cents)
                VALUES (@TenantId, @SubjectType, @SubjectId, @Hour, @ObservedCents, @ExpectedCents)
                ON CONFLICT DO NOTHING
                """, args, cancellationToken: ct));
            if (inserted == 0) continue; // another replica recorded it

            // The column is one of two fixed names, chosen by the subject's type (never by input).
            var column = candidate.SubjectType == "integration" ? "integration_id" : "api_key_id";
            var topModels = (await connection.QueryAsync<Spender>(new CommandDefinition($"""
                SELECT model AS name, sum(cost_cents) AS cost_cents, sum(requests)::bigint AS requests FROM llm_usage_hours
                WHERE tenant_id = @TenantId AND hour = @Hour AND {column} = @SubjectId
                GROUP BY model ORDER BY 2 DESC, 1 LIMIT {TopCount}
                """, args, cancellationToken: ct))).AsList();
            var topRuns = (await connection.QueryAsync<Spender>(new CommandDefinition($"""
                SELECT run_id AS name, sum(cost_cents) AS cost_cents, sum(requests)::bigint AS requests FROM llm_usage_run_hours
                WHERE tenant_id = @TenantId AND hour = @Hour AND {column} = @SubjectId
                GROUP BY run_id ORDER BY 2 DESC, 1 LIMIT {TopCount}
                """, args, cancellationToken: ct))).AsList();

            decimal? ratio = candidate.ExpectedCents > 0 ? Math.Round(candidate.ObservedCents / candidate.ExpectedCents, 2) : null;
            var method = $"median of the same UTC hour on each of the {_options.BaselineDays} days before, a day without spend counting as 0";
            var evidence = new Evidence(candidate.SubjectType, candidate.SubjectId, candidate.Name, hour, hour.AddHours(1), candidate.ObservedCents,
                candidate.ExpectedCents, ratio, method,
                candidate.BaselineCents.Select((cents, i) => new BaselineHour(hour.AddHours(-24 * (i + 1)), cents)).ToList(),
                _options.Ratio, _options.MinimumExcessCents, topModels, topRuns);
            var incident = await incidents.OpenOrBumpAsync(connection, candidate.TenantId, new IncidentReport(Kind,
                ratio is null || ratio < HighRatio ? "medium" : "high", candidate.SubjectType, candidate.SubjectId.ToString(),
                $"{Kind}:{candidate.SubjectType}/{candidate.SubjectId}", Message(evidence), evidence), ct);
            await connection.ExecuteAsync(new CommandDefinition("""
                UPDATE cost_anomalies SET incident_id = @IncidentId
                WHERE tenant_id = @TenantId AND subject_type = @SubjectType AND subject_id = @SubjectId AND hour = @Hour
                """, new { IncidentId = incident.Id, candidate.TenantId, candidate.SubjectType, candidate.SubjectId, Hour = hour }, cancellationToken: ct));
            await session.CommitAsync(ct);
            found++;
            logger.LogInformation("{Subject} {SubjectId} (tenant {TenantId}) spent {Observed} cents in the hour from {Hour:u}, {Expected} expected.",
                candidate.SubjectType, candidate.SubjectId, candidate.TenantId, candidate.ObservedCents, hour, candidate.ExpectedCents);
        }
        return found;
    }

    private static string Message(Evidence e)
    {
        var c = CultureInfo.InvariantCulture;
        var what = e.SubjectType == "integration" ? $"The integration '{e.Name}'" : $"The API key '{e.Name}'";
        var against = e.Ratio is { } ratio
            ? string.Format(c, "{0:0.##}× the {1:0.##} expected", ratio, e.ExpectedCents)
            : "with 0 expected";
        var top = string.Join("; ", new[]
        {
            e.TopModels.Count > 0 ? string.Format(c, "top model {0} ({1:0.##} cents)", e.TopModels[0].Name, e.TopModels[0].CostCents) : null,
            e.TopRuns.Count > 0 ? string.Format(c, "top run {0} ({1:0.##} cents)", e.TopRuns[0].Name, e.TopRuns[0].CostCents) : null,
        }.Where(t => t is not null));
        return string.Format(c, "{0} spent {1:0.##} cents from {2:yyyy-MM-dd HH:mm} to {3:HH:mm} UTC, {4} (the {5}){6}.",
            what, e.ObservedCents, e.WindowFrom.UtcDateTime, e.WindowTo.UtcDateTime, against, e.Method, top.Length > 0 ? "; " + top : "");
    }
}
