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
/// PostgreSQL was unreachable (each once: an outcome already on record is not appended again), then keeps this
/// process's row in <c>service_instances</c> fresh (its heartbeat), and, once the journal is empty, sweeps the windows
/// of processes that are gone.
/// <para>
/// Only a call in flight when its process died (or lost its database for good) can be left <c>started</c> without an
/// outcome, so only the last stretch of a dead process is swept: a process whose heartbeat is older than three
/// intervals and whose calls are all older than <c>Integrations:Governance:UnclosedCallAge</c> (default: the MCP call
/// timeout plus a minute) is claimed by one replica (a row lock, skipped by the others), the calls that started in
/// <c>[max(started_at, last_seen - age - interval), last_seen + interval]</c> and have no outcome are closed page by
/// page, and the process is marked swept. A call started earlier than that stretch was still running while its process
/// lived past its timeout, so it ended on record or in that process's journal. Each is closed with
/// <c>{kind}.failed</c>, outcome <c>unknown</c>, and a <c>call_unknown</c> incident per subject. The kind's own record
/// (an invocation row) is not written for such a call: the stage no longer holds its request.
/// </para>
/// <para>
/// Not swept: a process that stopped cleanly with an empty journal (nothing of it is in flight); history written before
/// migration 0039 (no process row covers it); a call whose outcome went to the journal of a process whose disk is lost,
/// when it started before that process's last stretch.
/// </para>
/// </summary>
public sealed class OutcomeRecovery(
    IServiceScopeFactory scopes, NpgsqlDataSource dataSource, OutcomeJournal journal, IncidentRecorder incidents,
    AuditKeys auditKeys, IConfiguration configuration, WorkerRegistry workers, TimeProvider time, ILogger<OutcomeRecovery> logger)
    : BackgroundService
{
    public const string Actor = "system:outcome-recovery";
    public const string WorkerName = "governance.outcome_recovery";
    public const string Unknown = "unknown";

    /// <summary>Unclosed calls read and closed at a time.</summary>
    public const int PageSize = 1000;

    /// <summary>Heartbeats a live process may miss (a slow pass, a short outage) before it counts as gone.</summary>
    private const int MissedHeartbeats = 3;

    private readonly TimeSpan _interval = configuration.GetValue("Integrations:Governance:OutcomeRecoveryInterval", TimeSpan.FromSeconds(5));

    private readonly TimeSpan _unclosedAge = configuration.GetValue<TimeSpan?>("Integrations:Governance:UnclosedCallAge")
        ?? configuration.GetValue("Integrations:Mcp:CallTimeout", TimeSpan.FromSeconds(60)) + TimeSpan.FromMinutes(1);

    private readonly Lock _instanceLock = new();
    private Guid _instanceId = Guid.NewGuid();
    private DateTimeOffset _startedAt = time.GetUtcNow();
    private bool _registered;

    /// <summary>This process's row in <c>service_instances</c> (a new one if another replica ever swept it as gone).</summary>
    public Guid InstanceId
    {
        get
        {
            lock (_instanceLock) return _instanceId;
        }
    }

    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        workers.RunEveryAsync(WorkerName,
            "Writes the outcomes journaled while the database was unreachable, keeps this process's heartbeat, and closes the calls left without an outcome by processes that are gone.",
            _interval, async ct =>
            {
                var written = await ReplayJournalAsync(ct);
                await HeartbeatAsync(ct);
                if (journal.HasPending) return $"{written} journaled outcomes written";
                var closed = await CloseUnclosedCallsAsync(ct);
                return $"{written} journaled outcomes written, {closed} unclosed calls closed";
            }, stoppingToken, startAtOnce: true);

    /// <summary>
    /// After requests have drained (the server stops first): with nothing journaled, nothing of this process is in
    /// flight, so its window needs no sweep. If the mark cannot be written, another replica sweeps it, which is safe.
    /// </summary>
    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken);
        if (!_registered || journal.HasPending) return;
        try
        {
            await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
            await connection.ExecuteAsync(new CommandDefinition(
                "UPDATE service_instances SET last_seen = greatest(last_seen, @Now), swept_at = @Now WHERE id = @Id AND swept_at IS NULL",
                new { Id = InstanceId, Now = time.GetUtcNow() }, cancellationToken: cancellationToken));
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException or OperationCanceledException)
        {
            logger.LogWarning(e, "Could not mark this process as stopped cleanly; another replica will sweep its last stretch.");
        }
    }

    /// <summary>
    /// Registers this process (from when it started, so calls made before its first heartbeat are in its window) or
    /// refreshes its <c>last_seen</c>. If another replica took it for gone and swept it, later calls are in no swept
    /// window yet: they get a new row, from the last heartbeat that row had.
    /// </summary>
    public async Task HeartbeatAsync(CancellationToken ct)
    {
        var now = time.GetUtcNow();
        Guid id;
        DateTimeOffset startedAt;
        lock (_instanceLock) (id, startedAt) = (_instanceId, _startedAt);
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        var lastSeen = await connection.QuerySingleOrDefaultAsync<DateTime?>(new CommandDefinition("""
            INSERT INTO service_instances (id, started_at, last_seen) VALUES (@Id, @StartedAt, @Now)
            ON CONFLICT (id) DO UPDATE SET last_seen = greatest(service_instances.last_seen, excluded.last_seen)
                WHERE service_instances.swept_at IS NULL
            RETURNING last_seen
            """, new { Id = id, StartedAt = startedAt, Now = now }, cancellationToken: ct));
        if (lastSeen is not null)
        {
            _registered = true;
            return;
        }
        var sweptFrom = await connection.QuerySingleOrDefaultAsync<DateTime?>(new CommandDefinition(
            "SELECT last_seen FROM service_instances WHERE id = @Id", new { Id = id }, cancellationToken: ct));
        logger.LogWarning("This process ({InstanceId}) was taken for gone and swept (its heartbeat lapsed); it goes on under a new id.", id);
        lock (_instanceLock) (_instanceId, _startedAt) = (Guid.NewGuid(), sweptFrom is { } from ? new DateTimeOffset(from, TimeSpan.Zero) : now);
        await HeartbeatAsync(ct);
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

    /// <summary>The started event of a call of a swept window that has no outcome.</summary>
    private sealed record Started(DateTime OccurredAt, string TenantId, long Seq, string CorrelationId, string Action,
        string SubjectType, string SubjectId, string Details);

    private sealed record GoneInstance(Guid Id, DateTime StartedAt, DateTime LastSeen);

    /// <summary>
    /// Sweeps every process that is gone and not yet swept (see the class): the number of calls closed. Each process is
    /// claimed with a row lock held until its window is swept, so a replica that dies mid-sweep releases it to the next.
    /// </summary>
    public async Task<int> CloseUnclosedCallsAsync(CancellationToken ct)
    {
        using var signing = AuditKeys.Use(auditKeys);
        var closed = 0;
        while (true)
        {
            var now = time.GetUtcNow();
            await using var connection = await dataSource.OpenConnectionAsync(ct);
            await using var claim = await connection.BeginTransactionAsync(ct);
            var gone = await connection.QuerySingleOrDefaultAsync<GoneInstance>(new CommandDefinition("""
                SELECT id, started_at, last_seen FROM service_instances
                WHERE swept_at IS NULL AND id <> @Me AND last_seen < @HeartbeatLapsedBefore AND last_seen < @CallsOldBefore
                ORDER BY last_seen
                LIMIT 1
                FOR UPDATE SKIP LOCKED
                """, new
            {
                Me = InstanceId,
                HeartbeatLapsedBefore = now - MissedHeartbeats * _interval,
                CallsOldBefore = now - _unclosedAge - _interval,
            }, claim, cancellationToken: ct));
            if (gone is null) break;

            var since = Max(gone.StartedAt, gone.LastSeen - _unclosedAge - _interval);
            var until = gone.LastSeen + _interval;
            var inWindow = await CloseWindowAsync(connection, claim, since, until, ct);
            await connection.ExecuteAsync(new CommandDefinition("UPDATE service_instances SET swept_at = @Now WHERE id = @Id",
                new { gone.Id, Now = now }, claim, cancellationToken: ct));
            await claim.CommitAsync(ct);
            if (inWindow > 0)
            {
                logger.LogWarning("Closed {Count} governed calls of process {InstanceId} (gone since {LastSeen:o}) that started but have no outcome, as outcome 'unknown'.",
                    inWindow, gone.Id, gone.LastSeen);
            }
            closed += inWindow;
        }
        return closed;
    }

    private static DateTime Max(DateTime a, DateTime b) => a > b ? a : b;

    /// <summary>
    /// Across tenants, so through a function of migration 0039 (the service's role sees one tenant at a time); a page
    /// at a time, each after the last one read, so a call that cannot be closed is not read again in this sweep.
    /// </summary>
    private async Task<int> CloseWindowAsync(NpgsqlConnection connection, NpgsqlTransaction claim, DateTime since, DateTime until, CancellationToken ct)
    {
        var closed = 0;
        var after = (OccurredAt: since, TenantId: "", Seq: 0L);
        while (true)
        {
            var page = (await connection.QueryAsync<Started>(new CommandDefinition("""
                SELECT occurred_at, tenant_id, seq, correlation_id, action, subject_type, subject_id, details
                FROM unclosed_governed_calls(@Since, @Until, @AfterOccurred, @AfterTenant, @AfterSeq, @Take)
                """, new { Since = since, Until = until, AfterOccurred = after.OccurredAt, AfterTenant = after.TenantId, AfterSeq = after.Seq, Take = PageSize },
                claim, cancellationToken: ct))).ToList();
            foreach (var call in page)
            {
                if (await CloseAsync(call, ct)) closed++;
            }
            if (page.Count < PageSize) return closed;
            after = (page[^1].OccurredAt, page[^1].TenantId, page[^1].Seq);
        }
    }

    private async Task<bool> CloseAsync(Started call, CancellationToken ct)
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
