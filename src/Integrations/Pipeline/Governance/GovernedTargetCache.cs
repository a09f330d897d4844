using System.Collections.Concurrent;
using System.Diagnostics.CodeAnalysis;

namespace Integrations.Pipeline.Governance;

/// <summary>
/// The targets of recent governed calls, per tenant, under each kind's own key type. A copy is only ever used to decide
/// a call together with the kind's check, in the same transaction as the decision's audit events, that the rows it was
/// read from are unchanged (<see cref="GovernedCallKind{TRequest,TTarget,TResult}.UnchangedCheck"/>); when they are
/// not, the copy is dropped and the call decided on fresh rows. So no change notification is needed for correctness,
/// and a change takes effect on the next call on every replica.
/// </summary>
public sealed class GovernedTargetCache
{
    private const int MaxEntries = 10_000;
    private readonly ConcurrentDictionary<(string Tenant, object Key), IGovernedTarget> _targets = new();

    public bool TryGet<TTarget>(string tenantId, object key, [NotNullWhen(true)] out TTarget? target)
        where TTarget : class, IGovernedTarget
    {
        target = _targets.TryGetValue((tenantId, key), out var found) ? found as TTarget : null;
        return target is not null;
    }

    public void Set(string tenantId, object key, IGovernedTarget target)
    {
        if (_targets.Count >= MaxEntries) _targets.Clear();
        _targets[(tenantId, key)] = target;
    }

    public void Remove(string tenantId, object key) => _targets.TryRemove((tenantId, key), out _);
}
