using System.Diagnostics;
using Integrations.Common;
using Integrations.Features.Policies;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Npgsql;

namespace Integrations.Pipeline.Governance;

/// <summary>What admission decided and recorded: the target, or the error to answer; whether <c>started</c> is on record too.</summary>
internal sealed record Admission<TTarget>(TTarget? Target, Error? Error, bool StartedRecorded);

/// <summary>
/// Steps 1 and 2 of a governed call: <c>requested</c>, the rules in order — the target's state, the tenant's policy
/// (deny and allow lists, risk ceiling), the input, the rate limits of the target and of the tenant — and then
/// <c>denied</c> with its rule and the kind's <c>denied</c> record, or <c>allowed</c> (with <c>started</c> when no
/// credential has to be resolved first), committed together before anything else happens.
/// <para>
/// The fast way, when this replica holds the target (a kind that gives a cache key) and the tenant's policy and no
/// rate limit has to be counted: decide in memory, then record the decision in one round trip (<see cref="TenantBatches"/>)
/// that is its own transaction and first checks the target's rows are still what was decided on. Otherwise, or when
/// they changed, the target is read; when no rate limit has to be counted the read transaction ends there and the
/// decision is recorded in the tenant's batch as on the fast way (so an admission never holds the tenant's chain head
/// across a round trip, and a busy tenant's admissions share commits); a counted limit is decided and recorded in the
/// reading transaction, so the count and the decision commit together.
/// </para>
/// </summary>
public sealed class CallAdmission(
    TenantSession session, TenantBatches batches, ToolPolicyStore policies, GovernedTargetCache targets, RateLimiter rateLimiter,
    RateLimitStatus rateLimits)
{
    /// <summary>Trace tag: <c>cached</c> when the call was decided on this replica's copy of its target, <c>read</c> when it was read.</summary>
    public const string AdmissionTag = "integrations.governed_call.admission";

    public const string NotFoundRule = "not_found";

    internal async Task<Admission<TTarget>> AdmitAsync<TRequest, TTarget, TResult>(
        GovernedCallKind<TRequest, TTarget, TResult> kind, TRequest request, GovernedCall call, CancellationToken ct)
        where TRequest : IGovernedCall, IOperation<TResult>
        where TTarget : class, IGovernedTarget
    {
        var tenantId = call.Caller.TenantId;
        var key = kind.CacheKey(request);
        if (key is not null && targets.TryGet<TTarget>(tenantId, key, out var cached) && policies.TryGetCached(tenantId, out var policy))
        {
            var denial = await CheckRulesAsync(kind, request, cached, policy);
            if (denial is not null || !HasRateLimits(kind, cached, policy))
            {
                try
                {
                    var (admission, audit) = Decide(kind, request, call, cached, denial);
                    await batches.WriteAsync(tenantId, audit, batch =>
                    {
                        batch.BatchCommands.Add(kind.UnchangedCheck(tenantId, cached));
                        if (denial is not null) kind.AddRecord(batch, DeniedRecord(request, call, cached, denial));
                    });
                    Activity.Current?.SetTag(AdmissionTag, "cached");
                    return admission;
                }
                catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.SerializationFailure)
                {
                    targets.Remove(tenantId, key); // changed since it was read: decide on the rows as they are
                }
            }
        }
        return await AdmitInTransactionAsync(kind, request, call, key, recordInBatch: true, ct);
    }

    private async Task<Admission<TTarget>> AdmitInTransactionAsync<TRequest, TTarget, TResult>(
        GovernedCallKind<TRequest, TTarget, TResult> kind, TRequest request, GovernedCall call, object? key, bool recordInBatch,
        CancellationToken ct)
        where TRequest : IGovernedCall, IOperation<TResult>
        where TTarget : class, IGovernedTarget
    {
        Activity.Current?.SetTag(AdmissionTag, "read");
        var tenantId = call.Caller.TenantId;
        var connection = await session.ConnectionAsync(ct);
        var target = await kind.FindAsync(connection, tenantId, request, ct);
        if (target is null)
        {
            var facts = new Dictionary<string, object?>();
            kind.AddFacts(request, null, facts);
            call.Describe(null, kind.SubjectOf(request), facts);
            var notFound = Error.NotFound(kind.TargetName);
            await AuditTrail.WriteAsync(connection, call.Caller,
                [call.Event("requested"), Denied(call, new CallDenial(NotFoundRule, notFound))], ct, call.CorrelationId);
            await session.CommitAsync(ct);
            return new Admission<TTarget>(null, notFound, false);
        }
        if (key is not null) targets.Set(tenantId, key, target);

        var policy = await policies.GetAsync(connection, tenantId, ct);
        var denial = await CheckRulesAsync(kind, request, target, policy);
        if (recordInBatch && (denial is not null || !HasRateLimits(kind, target, policy)))
        {
            await session.RollbackAsync(); // read only: nothing to keep
            var (decided, decision) = Decide(kind, request, call, target, denial);
            try
            {
                await batches.WriteAsync(tenantId, decision, batch =>
                {
                    if (key is not null) batch.BatchCommands.Add(kind.UnchangedCheck(tenantId, target));
                    if (denial is not null) kind.AddRecord(batch, DeniedRecord(request, call, target, denial));
                });
                return decided;
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.SerializationFailure)
            {
                // changed between the read and the write: read again and record in the reading transaction
                if (key is not null) targets.Remove(tenantId, key);
                return await AdmitInTransactionAsync(kind, request, call, key, recordInBatch: false, ct);
            }
        }
        denial ??= await CheckRateLimitsAsync(connection, kind, tenantId, target, policy, ct);

        var (admission, audit) = Decide(kind, request, call, target, denial);
        await using var batch = new NpgsqlBatch(connection);
        AuditTrail.AddTo(batch, tenantId, [audit]);
        if (denial is not null) kind.AddRecord(batch, DeniedRecord(request, call, target, denial));
        await batch.ExecuteNonQueryAsync(ct);
        await session.CommitAsync(ct);
        return admission;
    }

    /// <summary>The first rule short of the rate limits that refuses the call, or null when every one allows it.</summary>
    private static async ValueTask<CallDenial?> CheckRulesAsync<TRequest, TTarget, TResult>(
        GovernedCallKind<TRequest, TTarget, TResult> kind, TRequest request, TTarget target, ToolPolicy policy)
        where TRequest : IGovernedCall, IOperation<TResult>
        where TTarget : class, IGovernedTarget
    {
        if (kind.CheckState(target) is { } refused) return refused;
        var subject = kind.PolicySubjectOf(target);
        var decision = policy.Evaluate(subject.ScopeName, subject.ScopeId, subject.Name, subject.RiskLevel);
        if (!decision.Allowed) return CallDenial.Policy(decision.Rule!, decision.Reason!);
        return await kind.CheckInputAsync(request, target);
    }

    private static bool HasRateLimits<TRequest, TTarget, TResult>(GovernedCallKind<TRequest, TTarget, TResult> kind, TTarget target, ToolPolicy policy)
        where TRequest : IGovernedCall, IOperation<TResult>
        where TTarget : class, IGovernedTarget =>
        policy.TenantRateLimitPerMinute is not null || kind.RateLimitsOf(target, policy).Any();

    /// <summary>Counts the call against the target's and the tenant's per-minute limits, in the admitting transaction.</summary>
    private async Task<CallDenial?> CheckRateLimitsAsync<TRequest, TTarget, TResult>(NpgsqlConnection connection,
        GovernedCallKind<TRequest, TTarget, TResult> kind, string tenantId, TTarget target, ToolPolicy policy, CancellationToken ct)
        where TRequest : IGovernedCall, IOperation<TResult>
        where TTarget : class, IGovernedTarget
    {
        foreach (var limit in kind.RateLimitsOf(target, policy))
        {
            var counted = await rateLimiter.AcquireAsync(connection, tenantId, limit.Key, limit.PerMinute, ct);
            rateLimits.Counted(counted);
            if (!counted.Allowed) return new CallDenial(limit.Rule, Error.RateLimited(counted.RetryAfter, limit.Message));
        }
        if (policy.TenantRateLimitPerMinute is { } perTenant)
        {
            var counted = await rateLimiter.AcquireAsync(connection, tenantId, RateLimiter.TenantKey, perTenant, ct);
            rateLimits.Counted(counted);
            if (!counted.Allowed)
            {
                return new CallDenial(RateLimiter.TenantRule,
                    Error.RateLimited(counted.RetryAfter, $"The tenant allows {perTenant} governed calls per minute."));
            }
        }
        return null;
    }

    /// <summary>
    /// The decision and its audit events: requested, then allowed (and started, when no credential has to be resolved
    /// before the call) or denied with its rule.
    /// </summary>
    private static (Admission<TTarget> Admission, AuditWrite Audit) Decide<TRequest, TTarget, TResult>(
        GovernedCallKind<TRequest, TTarget, TResult> kind, TRequest request, GovernedCall call, TTarget target, CallDenial? denial)
        where TRequest : IGovernedCall, IOperation<TResult>
        where TTarget : class, IGovernedTarget
    {
        var facts = new Dictionary<string, object?>();
        kind.AddFacts(request, target, facts);
        call.Describe(target, target.SubjectId, facts);
        if (denial is not null)
        {
            return (new Admission<TTarget>(null, WithRule(denial), false), call.Write(call.Event("requested"), Denied(call, denial)));
        }
        var startsNow = target.CredentialRef is null;
        var requested = call.Event("requested");
        var allowed = call.Event("allowed", ("risk_level", kind.PolicySubjectOf(target).RiskLevel));
        return (new Admission<TTarget>(target, null, startsNow),
            startsNow ? call.Write(requested, allowed, call.Event("started")) : call.Write(requested, allowed));
    }

    private static AuditEvent Denied(GovernedCall call, CallDenial denial) =>
        call.Event("denied", ("rule", denial.Rule), ("code", denial.Error.Code), ("reason", denial.Error.Detail), ("errors", denial.Error.FieldErrors));

    private static CallRecord<TRequest, TTarget> DeniedRecord<TRequest, TTarget>(TRequest request, GovernedCall call, TTarget target, CallDenial denial) =>
        new(call, request, target, "denied", denial.Error.Detail, null, denial.Rule, null, call.Elapsed, denial.Error.Code);

    private static Error WithRule(CallDenial denial) => denial.Error with
    {
        Extensions = new Dictionary<string, object?>(denial.Error.Extensions ?? new Dictionary<string, object?>()) { ["rule"] = denial.Rule },
    };
}
