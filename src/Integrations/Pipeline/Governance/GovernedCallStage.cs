using System.Diagnostics;
using Integrations.Common;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Telemetry;
using Integrations.Infrastructure.Vault;
using MediatR;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Integrations.Pipeline.Governance;

/// <summary>
/// The governed call, one home for every kind: (1) <c>requested</c>; (2) the rules (<see cref="CallAdmission"/>) →
/// <c>denied</c> with its rule, or <c>allowed</c>; (3) the target's credential through the vault (grant checked,
/// access logged; never the caller's key); (4) <c>started</c>; (5) the handler, which performs only the side effect;
/// (6) <c>completed</c> or <c>failed</c>, the kind's record and, on failure, its incident (<see cref="CallOutcomes"/>).
/// Every event of one call carries the invocation id as its correlation id. Fail closed: if <c>requested</c>,
/// <c>allowed</c> or <c>started</c> cannot be written, the side effect does not happen (503).
/// </summary>
public sealed class GovernedCallStage(
    CallerContext caller,
    CallAdmission admission,
    CallOutcomes outcomes,
    CredentialResolver credentials,
    GovernedCallContext context,
    TenantBatches batches,
    ILogger<GovernedCallStage> logger)
{
    /// <summary>Trace tag with the invocation id, on the operation's activity.</summary>
    public const string InvocationIdTag = "integrations.invocation_id";

    public const string CredentialUnavailable = "credential_unavailable";

    /// <summary>What a caller refused because the database is unreachable is told to wait before trying again.</summary>
    public static readonly TimeSpan RetryAfter = TimeSpan.FromSeconds(5);

    /// <summary>
    /// The call, and when it fails the fallbacks its kind names (<see cref="GovernedCallKind{TRequest,TTarget,TResult}.FallbackFor"/>),
    /// one after another, each a governed call of its own: its rules, its credential, its events and its record. The
    /// first that succeeds answers; when none does, the first call's error answers, naming the fallbacks tried.
    /// </summary>
    internal async Task<TResponse> RunAsync<TRequest, TTarget, TResult, TResponse>(
        GovernedCallKind<TRequest, TTarget, TResult> kind, TRequest request, RequestHandlerDelegate<TResponse> next, CancellationToken ct)
        where TRequest : IGovernedCall, IOperation<TResult>
        where TTarget : class, IGovernedTarget
        where TResponse : IFallible<TResponse>
    {
        var (first, call) = await RunOneAsync(kind, request, next, ct);
        var (response, current) = (first, request);
        var tried = new List<Dictionary<string, object?>>();
        while (response.Error is { } error && kind.FallbackFor(current, call.Target as TTarget, error, call.Id) is { } fallback)
        {
            (response, call) = await RunOneAsync(kind, fallback, next, ct);
            tried.Add(new Dictionary<string, object?> { ["invocation_id"] = call.Id, ["code"] = response.Error?.Code });
            current = fallback;
        }
        if (response.Error is null || tried.Count == 0) return response;
        return TResponse.Fail(first.Error! with
        {
            Extensions = new Dictionary<string, object?>(first.Error!.Extensions ?? new Dictionary<string, object?>()) { ["fallbacks"] = tried },
        });
    }

    private async Task<(TResponse Response, GovernedCall Call)> RunOneAsync<TRequest, TTarget, TResult, TResponse>(
        GovernedCallKind<TRequest, TTarget, TResult> kind, TRequest request, RequestHandlerDelegate<TResponse> next, CancellationToken ct)
        where TRequest : IGovernedCall, IOperation<TResult>
        where TTarget : class, IGovernedTarget
        where TResponse : IFallible<TResponse>
    {
        var call = new GovernedCall(caller.Required, kind.EventPrefix, kind.SubjectType);
        Activity.Current?.SetTag(InvocationIdTag, call.CorrelationId);
        var tags = new TagList { { "kind", kind.EventPrefix } };
        try
        {
            var response = await CallAsync(kind, request, call, next, ct);
            tags.Add("outcome", response.Error?.Code ?? call.Output?.Outcome ?? CallOutput.Completed);
            if (response.Error?.Extensions?.TryGetValue("rule", out var rule) == true) tags.Add("rule", rule);
            return (response, call);
        }
        catch (Exception e)
        {
            tags.Add("outcome", e is OperationCanceledException ? "cancelled" : "exception");
            throw;
        }
        finally
        {
            Telemetry.GovernedCalls.Add(1, tags);
            Telemetry.GovernedCallDuration.Record(call.Elapsed, tags);
        }
    }

    private async Task<TResponse> CallAsync<TRequest, TTarget, TResult, TResponse>(
        GovernedCallKind<TRequest, TTarget, TResult> kind, TRequest request, GovernedCall call, RequestHandlerDelegate<TResponse> next,
        CancellationToken ct)
        where TRequest : IGovernedCall, IOperation<TResult>
        where TTarget : class, IGovernedTarget
        where TResponse : IFallible<TResponse>
    {

        Admission<TTarget> admitted;
        try
        {
            admitted = await admission.AdmitAsync(kind, request, call, ct);
        }
        catch (Exception e) when (IsAuditUnavailable(e))
        {
            return AuditUnavailable<TResponse>(e, call);
        }
        if (admitted.Error is { } refused) return Fail<TResponse>(refused, call);
        var target = admitted.Target!;

        var started = admitted.StartedRecorded;
        if (target.CredentialRef is { } reference)
        {
            // `started` commits with the access record when access is allowed: one commit before the side effect, not two.
            var startedWrite = started ? null : call.Write(call.Event("started"));
            Result<ResolvedCredential> resolved;
            try
            {
                resolved = await credentials.ResolveAsync(target.CredentialAccessor, reference, TRequest.Operation, ct, whenAllowed: startedWrite);
            }
            catch (Exception e) when (IsAuditUnavailable(e))
            {
                return AuditUnavailable<TResponse>(e, call);
            }
            started |= resolved.IsSuccess;
            if ((resolved.IsSuccess ? kind.CheckCredential(target, resolved.Value) : resolved.Error) is { } unusable)
            {
                await outcomes.FailAsync(kind, request, call, target, CallOutcomes.Failed, unusable, CredentialUnavailable);
                return Fail<TResponse>(unusable, call);
            }
            call.Credential = resolved.Value;
            call.Renewal = (stale, renewing) => credentials.RenewAsync(target.CredentialAccessor, reference, TRequest.Operation, stale, renewing);
        }

        if (!started)
        {
            try
            {
                await batches.WriteAsync(call.Caller.TenantId, call.Write(call.Event("started")));
            }
            catch (Exception e) when (IsAuditUnavailable(e))
            {
                return AuditUnavailable<TResponse>(e, call);
            }
        }

        TResponse response;
        context.Set(call);
        try
        {
            response = await next();
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            await outcomes.FailAsync(kind, request, call, target, CallOutcomes.Failed,
                new Error("cancelled", 499, "Cancelled.", "The caller cancelled the call."), "cancelled");
            throw;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            await outcomes.FailAsync(kind, request, call, target, CallOutcomes.Failed,
                new Error("internal_error", 500, "Internal error.", "The call ended with an unexpected error."), "exception");
            throw;
        }
        finally
        {
            context.Clear();
            // The credential is dropped as soon as the side effect ends; evidence keeps only what it must take out of the output.
            if (call.KeepsEvidence) call.CredentialSecrets = call.Credential?.SecretValues;
            call.Credential = null;
            call.Renewal = null;
        }

        if (response.Error is { } failure)
        {
            var outcome = failure.Code == "upstream_timeout" ? CallOutcomes.Timeout : CallOutcomes.Failed;
            await outcomes.FailAsync(kind, request, call, target, outcome, failure, null);
            return Fail<TResponse>(failure, call);
        }
        await outcomes.CompleteAsync(kind, request, call, target, call.Output ?? new CallOutput());
        return response;
    }

    private static bool IsAuditUnavailable(Exception e) => e is NpgsqlException or TimeoutException;

    private TResponse AuditUnavailable<TResponse>(Exception e, GovernedCall call)
        where TResponse : IFallible<TResponse>
    {
        logger.LogError(e, "The audit trail could not be written before governed call {InvocationId}; the call was not made.", call.Id);
        return TResponse.Fail(Error.Unavailable("The audit trail cannot be written right now, so the call was not made. Try again later.", RetryAfter));
    }

    /// <summary>Every answer of a call that was recorded names its invocation, so the caller can find its events and record.</summary>
    private static TResponse Fail<TResponse>(Error error, GovernedCall call)
        where TResponse : IFallible<TResponse> =>
        TResponse.Fail(error with
        {
            Extensions = new Dictionary<string, object?>(error.Extensions ?? new Dictionary<string, object?>()) { ["invocation_id"] = call.Id },
        });
}
