using System.Runtime.InteropServices;
using Integrations.Common;
using Integrations.Features.Incidents;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Npgsql;

namespace Integrations.Pipeline.Governance;

/// <summary>
/// The last step of a governed call: the outcome event (<c>completed</c>, or <c>failed</c> for <c>failed</c> and
/// <c>timeout</c>) and the kind's record of the call, committed together; a failure the kind reports an incident for
/// opens or bumps it in the same transaction, and the event and record name it. Written even when the caller has gone:
/// the side effect may already have happened. When PostgreSQL cannot be reached, the outcome goes to the local
/// <see cref="OutcomeJournal"/> instead, and is written from there when it is back (<see cref="OutcomeRecovery"/>).
/// </summary>
public sealed class CallOutcomes(TenantSession session, TenantBatches batches, IncidentRecorder incidents, OutcomeJournal journal)
{
    public const string Failed = "failed";
    public const string Timeout = "timeout";

    private static readonly Dictionary<string, object?> EmptyFacts = [];

    /// <summary>The side effect answered: <c>completed</c> with what it observed. One round trip that is its own transaction.</summary>
    internal async Task CompleteAsync<TRequest, TTarget, TResult>(
        GovernedCallKind<TRequest, TTarget, TResult> kind, TRequest request, GovernedCall call, TTarget target, CallOutput output)
        where TRequest : IGovernedCall, IOperation<TResult>
        where TTarget : class, IGovernedTarget
    {
        var duration = call.Duration;
        var record = new CallRecord<TRequest, TTarget>(call, request, target, output.Outcome, output.Error, output.OutputHash, null, null, duration);
        List<(string, object?)> details = [("outcome", output.Outcome), ("duration_ms", duration), ("output_hash", output.OutputHash)];
        if (output.Error is not null) details.Add(("error", output.Error));
        foreach (var (key, value) in output.Facts ?? EmptyFacts) details.Add((key, value));
        var write = call.Write(call.Event("completed", CollectionsMarshal.AsSpan(details)));
        try
        {
            await batches.WriteAsync(call.Caller.TenantId, write, batch =>
            {
                kind.AddRecord(batch, record);
                CallEvidence.AddTo(batch, call, output);
            });
        }
        catch (Exception e) when (OutcomeJournal.IsUnreachable(e))
        {
            await JournalAsync(kind, record, write, null, null, output);
        }
    }

    /// <summary>
    /// The call failed (<paramref name="outcome"/> <c>failed</c> or <c>timeout</c>) with <paramref name="error"/>.
    /// <paramref name="reason"/> says why when the failure is not the target's (the credential was unusable, the caller
    /// cancelled): then no incident is opened.
    /// </summary>
    internal async Task FailAsync<TRequest, TTarget, TResult>(GovernedCallKind<TRequest, TTarget, TResult> kind, TRequest request,
        GovernedCall call, TTarget target, string outcome, Error error, string? reason)
        where TRequest : IGovernedCall, IOperation<TResult>
        where TTarget : class, IGovernedTarget
    {
        var tenantId = call.Caller.TenantId;
        var record = new CallRecord<TRequest, TTarget>(call, request, target, outcome, error.Detail, null, reason, null, call.Duration, error.Code);
        var report = reason is null ? kind.IncidentFor(record) : null;
        if (report is null)
        {
            var write = call.Write(FailedEvent(call, record, error));
            try
            {
                await batches.WriteAsync(tenantId, write, batch => kind.AddRecord(batch, record));
            }
            catch (Exception e) when (OutcomeJournal.IsUnreachable(e))
            {
                await JournalAsync(kind, record, write, null, null);
            }
            return;
        }

        try
        {
            var connection = await session.ConnectionAsync(CancellationToken.None);
            var incident = await incidents.OpenOrBumpAsync(connection, tenantId, report, CancellationToken.None);
            var opened = record with { IncidentId = incident.Id };
            await using (var batch = new NpgsqlBatch(connection))
            {
                AuditTrail.AddTo(batch, tenantId, [call.Write(FailedEvent(call, opened, error))]);
                kind.AddRecord(batch, opened);
                await batch.ExecuteNonQueryAsync(CancellationToken.None);
            }
            await session.CommitAsync(CancellationToken.None);
        }
        catch (Exception e) when (OutcomeJournal.IsUnreachable(e))
        {
            await session.RollbackAsync(); // whatever the lost connection had begun
            // The incident's id is known only once it is opened or bumped: the entry names a placeholder the replay replaces.
            var placeholder = Ids.New();
            var pending = record with { IncidentId = placeholder };
            await JournalAsync(kind, pending, call.Write(FailedEvent(call, pending, error)), report, placeholder);
        }
    }

    private Task JournalAsync<TRequest, TTarget, TResult>(GovernedCallKind<TRequest, TTarget, TResult> kind,
        CallRecord<TRequest, TTarget> record, AuditWrite write, IncidentReport? incident, Guid? placeholder, CallOutput? completed = null)
        where TRequest : IGovernedCall, IOperation<TResult>
        where TTarget : class, IGovernedTarget
    {
        var statements = new NpgsqlBatch();
        kind.AddRecord(statements, record);
        if (completed is not null) CallEvidence.AddTo(statements, record.Call, completed);
        return journal.AppendAsync(JournaledOutcome.From(write, statements, incident, placeholder, record.Call.Id));
    }

    private static AuditEvent FailedEvent<TRequest, TTarget>(GovernedCall call, CallRecord<TRequest, TTarget> record, Error error)
    {
        List<(string, object?)> details = [("outcome", record.Outcome), ("code", error.Code), ("reason", error.Detail), ("duration_ms", record.DurationMs),
            ("incident_id", record.IncidentId), ("cause", record.Reason)];
        foreach (var (key, value) in call.Output?.Facts ?? EmptyFacts) details.Add((key, value));
        return call.Event("failed", CollectionsMarshal.AsSpan(details));
    }
}
