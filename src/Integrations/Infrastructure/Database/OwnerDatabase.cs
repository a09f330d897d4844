using Npgsql;

namespace Integrations.Infrastructure.Database;

/// <summary>
/// The pool of the role that owns the tables (<c>ConnectionStrings:IntegrationsOwner</c>): migrations and the operator
/// commands that work across tenants (<c>create-api-key</c>, <c>revoke-api-key</c>, <c>rotate-master-key</c>). Requests
/// never use it; they log in with <c>ConnectionStrings:Integrations</c>, a role with only <c>integrations_app</c>'s
/// rights. Without an owner connection string both are the same pool (the service is then the owner, as before 0015).
/// </summary>
public sealed class OwnerDatabase : IAsyncDisposable
{
    public const string ConnectionStringName = "IntegrationsOwner";

    private readonly bool _owned;

    public OwnerDatabase(NpgsqlDataSource dataSource, bool owned)
    {
        DataSource = dataSource;
        _owned = owned;
    }

    public NpgsqlDataSource DataSource { get; }

    /// <summary>True when the owner is a pool of its own, not the service's.</summary>
    public bool IsSeparate => _owned;

    public ValueTask DisposeAsync() => _owned ? DataSource.DisposeAsync() : ValueTask.CompletedTask;
}
