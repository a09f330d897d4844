using Dapper;
using Integrations.Common;
using Integrations.Features.Incidents;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Workers;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Integrations.Pipeline.Governance;

/// <summary>
/// Makes sure every governed call that started ends on record. Every <c>Integrations:Governance:OutcomeRecoveryInterval</c>
/// (default 5 s; <c>00:00:00</c> turns it off) it writes the outcomes the <see cref="OutcomeJournal"/> kept while
/// PostgreSQL was unreachable (each once: an outcome already on record is not appended again). Once the journal is
/// empty after start-up, it closes calls that have <c>started</c> but no outcome and started more than
/// <c>Integrations:Governance:UnclosedCallAge</c> ago (default: the MCP call timeout plus a minute; within the last
/// seven days): their process ended or lost its database mid-call, so whether the side effect happened is unknown.
/// Each is closed with <c>{kind}.failed</c>, outcome <c>unknown</c>, and a <c>call_unknown</c> incident per subject.
/// The kind's own record (an invocation row) is not written for such a call: the stage no longer holds its request.
/// </summary>
public sealed class OutcomeRecovery(
    IServiceScopeFactory scopes, NpgsqlDataSource dataSource, OutcomeJournal journal, IncidentRecorder incidents,
    AuditKeys auditKeys, IConfiguration configuration, WorkerRegistry workers, ILogger<OutcomeRecovery> logger) : BackgroundService
{
    public const string Actor = "system:outcome-recovery";
    public const string WorkerName = "governance.outcome_recovery";
    public const string Unknown = "unknown";

    private static readonly TimeSpan Window = TimeSpan.FromDays(7);

    private readonly TimeSpan _interval = configuration.GetValue("Integrations:Governance:OutcomeRecoveryInterval", TimeSpan.FromSeconds(5));

    private readonly TimeSpan _unclosedAge = configuration.GetValue<TimeSpan?>("Integrations:Governance:UnclosedCallAge")
        ?? configuration.GetValue("Integrations:Mcp:CallTimeout", TimeSpan.FromSeconds(60)) + TimeSpan.FromMinutes(1);

    protected override Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var swept = false;
        return workers.RunEveryAsync(WorkerName,
            "Writes the outcomes journaled while the database was unreachable, then closes governed calls left without an outcome.",
            _interval, async ct =>
            {
                var written = await ReplayJournalAsync(ct);
                if (swept || journal.HasPending) return $"{written} journaled outcomes written";
                var closed = await CloseUnclosedCallsAsync(ct);
                swept = true;
                return $"{written} journaled outcomes written, {closed} unclosed calls closed";
            }, stoppingToken, startAtOnce: true);
    }

    /// <summary>Writes every journaled outcome, oldest first; the number written. Stops while the database is unreachable.</summary>
    public async Task<int> ReplayJournalAsync(CancellationToken ct)
    {
        using var signing = AuditKeys.Use(auditKeys); // outside any request: the outcomes are signed now, when they are written
        var written = 0;
        foreach (var (path, outcome) in journal.Pending())
        {
            try
            {
                await ReplayAsync(outcome, ct);
            }
            catch (Exception e) when (OutcomeJournal.IsUnreachable(e))
            {
                logger.LogWarning(e, "The database is still unreachable; {Count} journaled outcomes wait for the next pass.", journal.Pending().Count());
                break;
            }
            catch (PostgresException e)
            {
                // PostgreSQL refuses this entry for what it is, so it would block every later one: set it aside, loudly.
                logger.LogError(e, "A journaled outcome of call {CallId} was refused and moved aside ({Path}).", outcome.CallId, path);
                Directory.CreateDirectory(Path.Combine(journal.Directory, "refused"));
                File.Move(path, Path.Combine(journal.Directory, "refused", Path.GetFileName(path)));
                continue;
            }
            File.Delete(path);
            written++;
        }
        if (written > 0) logger.LogInformation("Wrote {Count} outcomes kept while the database was unreachable.", written);
        return written;
    }

    private async Task ReplayAsync(JournaledOutcome outcome, CancellationToken ct)
    {
        await using var scope = scopes.CreateAsyncScope();
        scope.ServiceProvider.GetRequiredService<CallerContext>().Set(new Caller(outcome.TenantId, outcome.Actor, new HashSet<string>()));
        var session = scope.ServiceProvider.GetRequiredService<TenantSession>();
        var connection = await session.ConnectionAsync(ct);
        var first = outcome.Events[0];
        if (!await OnRecordAsync(connection, outcome.TenantId, first.SubjectType, first.SubjectId, outcome.CorrelationId, first.Action, ct))
        {
            Guid? incidentId = outcome.Incident is { } report ? (await incidents.OpenOrBumpAsync(connection, outcome.TenantId, report, ct)).Id : null;
            await using var batch = new NpgsqlBatch(connection);
            AuditTrail.AddTo(batch, outcome.TenantId, [outcome.ToAuditWrite(incidentId)]);
            outcome.AddStatementsTo(batch, incidentId);
            await batch.ExecuteNonQueryAsync(ct);
        }
        await session.CommitAsync(ct);
    }

    /// <summary>Serialized per call, so two replicas never write the same outcome twice.</summary>
    private static Task<bool> OnRecordAsync(NpgsqlConnection connection, string tenantId, string subjectType, string subjectId,
        string correlationId, string action, CancellationToken ct) =>
        connection.QuerySingleAsync<bool>(new CommandDefinition("""
            SELECT EXISTS (
                SELECT FROM audit_events WHERE tenant_id = @TenantId AND subject_type = @SubjectType AND subject_id = @SubjectId
                  AND correlation_id = @CorrelationId AND action = ANY(@Actions))
            FROM (SELECT pg_advisory_xact_lock(hashtext(@CorrelationId))) AS locked
            """, new { TenantId = tenantId, SubjectType = subjectType, SubjectId = subjectId, CorrelationId = correlationId, Actions = Outcomes(action) },
            cancellationToken: ct));

    private static string[] Outcomes(string action)
    {
        var prefix = action[..action.LastIndexOf('.')];
        return [$"{prefix}.completed", $"{prefix}.failed"];
    }

    private sealed record Unclosed(string TenantId, string CorrelationId, string Action, string SubjectType, string SubjectId, string Details);

    /// <summary>Across tenants, so through a function of migration 0015 (the service's role sees one tenant at a time).</summary>
    private const string UnclosedSql = """
        SELECT tenant_id, correlation_id, action, subject_type, subject_id, details FROM unclosed_governed_calls(@Age, @Window, 1000)
        """;

    /// <summary>Closes the calls left <c>started</c> without an outcome; the number closed.</summary>
    public async Task<int> CloseUnclosedCallsAsync(CancellationToken ct)
    {
        using var signing = AuditKeys.Use(auditKeys);
        List<Unclosed> unclosed;
        await using (var connection = await dataSource.OpenConnectionAsync(ct))
        {
            unclosed = (await connection.QueryAsync<Unclosed>(new CommandDefinition(UnclosedSql,
                new { Age = _unclosedAge, Window }, cancellationToken: ct))).ToList();
        }
        var closed = 0;
        foreach (var call in unclosed)
        {
            if (await CloseAsync(call, ct)) closed++;
        }
        if (closed > 0) logger.LogWarning("Closed {Count} governed calls that started but have no outcome, as outcome 'unknown'.", closed);
        return closed;
    }

    private async Task<bool> CloseAsync(Unclosed call, CancellationToken ct)
    {
        await using var scope = scopes.CreateAsyncScope();
        var caller = new Caller(call.TenantId, Actor, new HashSet<string>(), IsSystem: true);
        scope.ServiceProvider.GetRequiredService<CallerContext>().Set(caller);
        var session = scope.ServiceProvider.GetRequiredService<TenantSession>();
        var connection = await session.ConnectionAsync(ct);
        if (await OnRecordAsync(connection, call.TenantId, call.SubjectType, call.SubjectId, call.CorrelationId, call.Action, ct)) return false;

        var prefix = call.Action[..call.Action.LastIndexOf('.')];
        var incident = await incidents.OpenOrBumpAsync(connection, call.TenantId, new IncidentReport("call_unknown", "high", call.SubjectType,
            call.SubjectId, $"call_unknown:{call.SubjectType}/{call.SubjectId}",
            $"A {prefix} call ({call.CorrelationId}) started but its outcome was never recorded; whether it took effect is unknown."), ct);
        var details = System.Text.Json.JsonSerializer.Deserialize<Dictionary<string, object?>>(call.Details) ?? [];
        details["outcome"] = Unknown;
        details["code"] = Unknown;
        details["reason"] = "The service stopped or lost its database while the call was under way; whether the side effect happened is unknown.";
        details["cause"] = "no_outcome_recorded";
        details["incident_id"] = incident.Id;
        await AuditTrail.WriteAsync(connection, caller, [new AuditEvent($"{prefix}.failed", call.SubjectType, call.SubjectId, details)], ct, call.CorrelationId);
        await session.CommitAsync(ct);
        return true;
    }
}
