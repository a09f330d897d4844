namespace Integrations.Common;

/// <summary>Who is acting: filled from the API key over HTTP, or by an in-process caller before it sends.</summary>
public sealed record Caller(string TenantId, string Actor, IReadOnlySet<string> Scopes, bool IsSystem = false)
{
    public bool Has(string scope) => Scopes.Contains(scope) || Scopes.Contains(Common.Scopes.Admin);
}

/// <summary>The scoped holder of the current <see cref="Caller"/>; a request sent without one is refused.</summary>
public sealed class CallerContext
{
    private Caller? _current;

    public Caller? Current => _current;

    public Caller Required => _current ?? throw new InvalidOperationException("No caller context is set for this scope.");

    public string TenantId => Required.TenantId;

    public void Set(Caller caller)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(caller.TenantId);
        if (_current is not null && _current != caller)
        {
            throw new InvalidOperationException("The caller context of a scope cannot change once set.");
        }
        _current = caller;
    }
}
