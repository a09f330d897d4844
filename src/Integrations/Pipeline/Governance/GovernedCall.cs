using System.Diagnostics;
using System.Text.Json;
using Integrations.Common;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Vault;

namespace Integrations.Pipeline.Governance;

/// <summary>
/// A request that is a governed call: the <see cref="GovernedCallBehavior{TRequest,TResponse}"/> runs the governed-call
/// stage around its handler, with the <see cref="GovernedCallKind{TRequest,TTarget,TResult}"/> registered for it.
/// </summary>
public interface IGovernedCall : IOperation;

/// <summary>What a governed call is made against, as far as the stage needs to know it.</summary>
public interface IGovernedTarget
{
    /// <summary>The subject id of the call's audit events.</summary>
    string SubjectId { get; }

    /// <summary>Whose grant the credential is resolved under.</summary>
    CredentialAccessor CredentialAccessor { get; }

    /// <summary>The credential the side effect needs, or null when it needs none.</summary>
    string? CredentialRef { get; }

    /// <summary>Whether and how the call's output is kept as evidence (<see cref="CallEvidence"/>); null keeps nothing.</summary>
    EvidencePolicy? Evidence => null;
}

/// <summary>A rule that refused a call: its name (audited, and answered as the problem's <c>rule</c>) and the error to answer.</summary>
public sealed record CallDenial(string Rule, Error Error)
{
    public static CallDenial Policy(string rule, string detail) => new(rule, Error.PolicyDenied(rule, detail));
}

/// <summary>The tenant policy's view of a target: the scope it belongs to (a server, a datasource), its name and risk.</summary>
public sealed record PolicySubject(string ScopeName, Guid ScopeId, string Name, string RiskLevel);

/// <summary>A per-minute limit counted for one target, and the rule and message of a refusal.</summary>
public sealed record TargetRateLimit(string Key, int PerMinute, string Rule, string Message);

/// <summary>What the side effect observed, reported by the handler for the outcome event and the call's record.</summary>
/// <param name="Outcome"><c>completed</c>, or a kind's own name for a completed call whose answer is an error (<c>tool_error</c>).</param>
/// <param name="Error">The answer's error text when it is one; recorded, never raised.</param>
/// <param name="Facts">More details of the outcome event (row counts, truncation).</param>
/// <param name="Output">What the side effect returned, hashed as <paramref name="OutputHash"/>: given only when the call keeps
/// evidence (<see cref="GovernedCall.KeepsEvidence"/>), and then kept, redacted, with the outcome.</param>
public sealed record CallOutput(
    string Outcome = CallOutput.Completed, string? OutputHash = null, string? Error = null, IReadOnlyDictionary<string, object?>? Facts = null,
    JsonElement? Output = null)
{
    public const string Completed = "completed";
}

/// <summary>One call's outcome as the kind's own record of calls stores it (<see cref="GovernedCallKind{TRequest,TTarget,TResult}.AddRecord"/>).</summary>
/// <param name="ErrorCode">The stable code of the error a denied or failed call answered with; null when it completed.</param>
/// <remarks>What the handler observed before the call ended, failed ones included (tokens streamed before a drop), is <c>Call.Output</c>.</remarks>
public sealed record CallRecord<TRequest, TTarget>(
    GovernedCall Call, TRequest Request, TTarget Target, string Outcome, string? Error, string? OutputHash, string? Reason,
    Guid? IncidentId, double DurationMs, string? ErrorCode = null);

/// <summary>
/// One governed call as its handler sees it: its id (the correlation id of all its audit events), its caller, the target
/// admission decided on and the credential resolved for it. The handler reports what its side effect observed with
/// <see cref="Report"/>.
/// </summary>
public sealed class GovernedCall
{
    private readonly long _started = Stopwatch.GetTimestamp();
    private double? _duration;

    internal GovernedCall(Caller caller, string eventPrefix, string subjectType)
    {
        Caller = caller;
        EventPrefix = eventPrefix;
        SubjectType = subjectType;
        CorrelationId = Id.ToString();
    }

    public Guid Id { get; } = Ids.New();

    public Caller Caller { get; }

    public string CorrelationId { get; }

    public DateTime StartedAt { get; } = DateTime.UtcNow;

    public IGovernedTarget? Target { get; internal set; }

    public ResolvedCredential? Credential { get; internal set; }

    /// <summary>The secret strings of <see cref="Credential"/>, kept past the side effect only for a call that keeps evidence (they are redacted from it).</summary>
    internal IReadOnlyCollection<string>? CredentialSecrets { get; set; }

    /// <summary>Set by the stage while the side effect runs: resolves the call's credential again (<see cref="CredentialResolver.RenewAsync"/>).</summary>
    internal Func<ResolvedCredential, CancellationToken, Task<Result<ResolvedCredential>?>>? Renewal { get; set; }

    /// <summary>
    /// The destination refused <see cref="Credential"/> (HTTP 401): for a credential that can be renewed (an OAuth access
    /// token) the new one, which becomes <see cref="Credential"/>; null when it cannot be, or was already renewed once in
    /// this call — a handler tries again at most once.
    /// </summary>
    public async Task<ResolvedCredential?> RenewCredentialAsync(CancellationToken ct)
    {
        if (Credential is not { } stale || Renewal is not { } renewal) return null;
        Renewal = null;
        if (await renewal(stale, ct) is not { IsSuccess: true } renewed) return null;
        Credential = renewed.Value;
        return renewed.Value;
    }

    /// <summary>
    /// Performs the side effect with the call's credential and, when the destination refused it (HTTP 401, see
    /// <see cref="Error.RefusedCredential"/>) and it can be renewed, once more with the renewed one. A 401 means the
    /// destination did nothing, so trying again cannot do anything twice.
    /// </summary>
    public async Task<Result<T>> WithRenewalAsync<T>(Func<ResolvedCredential?, Task<Result<T>>> attempt, CancellationToken ct)
    {
        var result = await attempt(Credential);
        if (result.IsSuccess || !result.Error!.RefusedCredential() || await RenewCredentialAsync(ct) is not { } renewed) return result;
        return await attempt(renewed);
    }

    public CallOutput? Output { get; private set; }

    /// <summary>Every event of the call carries these: the invocation id and the kind's facts about the request and target.</summary>
    internal Dictionary<string, object?> Facts { get; private set; } = [];

    internal string EventPrefix { get; }

    internal string SubjectType { get; }

    internal string SubjectId { get; private set; } = string.Empty;

    /// <summary>Milliseconds since the call began.</summary>
    public double Elapsed => Math.Round(Stopwatch.GetElapsedTime(_started).TotalMilliseconds, 3);

    /// <summary>
    /// The call's duration: fixed the first time it is read, so the handler's answer and the recorded outcome agree.
    /// The stage reads it as soon as the side effect ends if the handler has not.
    /// </summary>
    public double Duration => _duration ??= Elapsed;

    /// <summary>Whether the target keeps its calls' output as evidence: the handler then reports it (<see cref="CallOutput.Output"/>).</summary>
    public bool KeepsEvidence => Target?.Evidence is not null;

    public TTarget TargetAs<TTarget>() where TTarget : IGovernedTarget =>
        Target is TTarget target ? target : throw new InvalidOperationException("The governed call has no target of that type.");

    /// <summary>
    /// What the side effect observed. A handler may report before it fails or is cancelled (a stream that ended early):
    /// the <c>failed</c> event carries the reported facts and the kind's record can read them.
    /// </summary>
    public void Report(CallOutput output) => Output = output;

    /// <summary>Fixes what the call's events say about it: the target (null when none was found) and the kind's facts.</summary>
    internal void Describe(IGovernedTarget? target, string subjectId, Dictionary<string, object?> facts)
    {
        facts["invocation_id"] = Id;
        Target = target;
        SubjectId = subjectId;
        Facts = facts;
    }

    /// <summary>The event <c>{prefix}.{step}</c> with the call's facts and <paramref name="details"/>.</summary>
    internal AuditEvent Event(string step, params ReadOnlySpan<(string Key, object? Value)> details)
    {
        var all = new Dictionary<string, object?>(Facts);
        foreach (var (key, value) in details) all[key] = value;
        return new AuditEvent($"{EventPrefix}.{step}", SubjectType, SubjectId, all);
    }

    /// <summary>Events of this call as one write: the caller as actor, the call's id as their correlation id.</summary>
    internal AuditWrite Write(params AuditEvent[] events) => new(Caller, events, CorrelationId);
}

/// <summary>The scoped holder of the governed call under way, set by the stage for the duration of the handler only.</summary>
public sealed class GovernedCallContext
{
    private GovernedCall? _current;

    public GovernedCall Current => _current ?? throw new InvalidOperationException("No governed call is under way in this scope.");

    internal void Set(GovernedCall call)
    {
        if (_current is not null) throw new InvalidOperationException("A governed call is already under way in this scope.");
        _current = call;
    }

    internal void Clear() => _current = null;
}
