using Integrations.Common;
using Integrations.Features.Incidents;
using Integrations.Features.Policies;
using Integrations.Infrastructure.Vault;
using MediatR;
using Npgsql;

namespace Integrations.Pipeline.Governance;

/// <summary>How the behavior reaches a kind without knowing its target type.</summary>
public interface IGovernedCallKind<in TRequest>
    where TRequest : IGovernedCall
{
    Task<TResponse> GovernAsync<TResponse>(GovernedCallStage stage, TRequest request, RequestHandlerDelegate<TResponse> next, CancellationToken ct)
        where TResponse : IFallible<TResponse>;
}

/// <summary>
/// One kind of governed call (a tool call, a query): what the stage cannot know by itself. A new kind is a request
/// record marked <see cref="IGovernedCall"/>, a subclass of this registered as <see cref="IGovernedCallKind{TRequest}"/>
/// (its target lookup and its rules), and a handler that performs only the side effect. The stage owns everything
/// else: the events, the policy and rate limits, the credential, the outcome, the record and the incident.
/// </summary>
/// <typeparam name="TRequest">The request.</typeparam>
/// <typeparam name="TTarget">What a call is made against, read by <see cref="FindAsync"/>.</typeparam>
/// <typeparam name="TResult">The handler's success value.</typeparam>
public abstract class GovernedCallKind<TRequest, TTarget, TResult> : IGovernedCallKind<TRequest>
    where TRequest : IGovernedCall, IOperation<TResult>
    where TTarget : class, IGovernedTarget
{
    /// <summary>The audit actions are <c>{EventPrefix}.requested</c>, <c>.allowed</c>, <c>.denied</c>, <c>.started</c>, <c>.completed</c>, <c>.failed</c>.</summary>
    public abstract string EventPrefix { get; }

    public abstract string SubjectType { get; }

    /// <summary>How a missing target is named in the 404 (<c>The {TargetName} does not exist.</c>).</summary>
    public abstract string TargetName { get; }

    /// <summary>The audit subject of a call whose target was not found.</summary>
    public abstract string SubjectOf(TRequest request);

    /// <summary>The target, read in the admitting transaction (the tenant is pinned); null when it does not exist.</summary>
    public abstract Task<TTarget?> FindAsync(NpgsqlConnection connection, string tenantId, TRequest request, CancellationToken ct);

    /// <summary>
    /// A key under which this replica may keep the target between calls, or null (the default) to read it every time.
    /// A kind that gives one must give <see cref="UnchangedCheck"/>.
    /// </summary>
    public virtual object? CacheKey(TRequest request) => null;

    /// <summary>
    /// A statement that aborts its transaction with serialization_failure (see <c>assert_unchanged</c>) unless the rows
    /// <paramref name="target"/> was read from are unchanged: a cached target is only ever decided on together with it.
    /// </summary>
    public virtual NpgsqlBatchCommand UnchangedCheck(string tenantId, TTarget target) =>
        throw new NotSupportedException($"{GetType().Name} gives a cache key but no check that a cached target is unchanged.");

    /// <summary>The target's own state (disabled, drifted, removed): the first rule that refuses the call, or null.</summary>
    public virtual CallDenial? CheckState(TTarget target) => null;

    /// <summary>How the tenant's policy (deny and allow lists, risk ceiling) sees the target.</summary>
    public abstract PolicySubject PolicySubjectOf(TTarget target);

    /// <summary>The request's input against what the target accepts (an input schema, declared parameters), or null when it fits.</summary>
    public virtual ValueTask<CallDenial?> CheckInputAsync(TRequest request, TTarget target) => ValueTask.FromResult<CallDenial?>(null);

    /// <summary>The target's own per-minute limit under <paramref name="policy"/>, or null for none. The tenant-wide limit is the stage's.</summary>
    public virtual TargetRateLimit? RateLimitOf(TTarget target, ToolPolicy policy) => null;

    /// <summary>Every per-minute limit the call is counted against (a kind with more than one overrides this); each must allow it.</summary>
    public virtual IEnumerable<TargetRateLimit> RateLimitsOf(TTarget target, ToolPolicy policy) =>
        RateLimitOf(target, policy) is { } limit ? [limit] : [];

    /// <summary>Whether the resolved credential can be used for the side effect (its type carries what is needed), before the call starts.</summary>
    public virtual Error? CheckCredential(TTarget target, ResolvedCredential credential) => null;

    /// <summary>Facts every audit event of the call carries (ids, names, hashes of the input — never the input itself).</summary>
    public abstract void AddFacts(TRequest request, TTarget? target, IDictionary<string, object?> facts);

    /// <summary>The kind's own immutable record of the call (denied or finished), committed with its outcome event. None by default.</summary>
    public virtual void AddRecord(NpgsqlBatch batch, CallRecord<TRequest, TTarget> record)
    {
    }

    /// <summary>The incident a failed call (<c>failed</c> or <c>timeout</c>) opens or bumps, or null for none.</summary>
    public virtual IncidentReport? IncidentFor(CallRecord<TRequest, TTarget> record) => null;

    /// <summary>
    /// What to try when the call ended with <paramref name="error"/> (denied or failed; <paramref name="target"/> null when
    /// none was found): the request of the next call, against another target, or null (the default) to answer the error.
    /// The stage runs it as a call of its own, through the same rules, and asks again should it fail too; the same
    /// handler performs it, reading its target from the call. <paramref name="invocationId"/> is the ended call's.
    /// </summary>
    public virtual TRequest? FallbackFor(TRequest request, TTarget? target, Error error, Guid invocationId) => default;

    Task<TResponse> IGovernedCallKind<TRequest>.GovernAsync<TResponse>(
        GovernedCallStage stage, TRequest request, RequestHandlerDelegate<TResponse> next, CancellationToken ct) =>
        stage.RunAsync(this, request, next, ct);
}
