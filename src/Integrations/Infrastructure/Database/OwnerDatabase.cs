using Npgsql;

namespace Integrations.Infrastructure.Database;

/// <summary>
/// The pool of the role that owns the tables (<c>ConnectionStrings:IntegrationsOwner</c>): migrations and the operator
/// commands that work across tenants (<c>create-api-key</c>, <c>revoke-api-key</c>, <c>rotate-master-key</c>). Requests
/// never use it; they log in with <c>ConnectionStrings:Integrations</c>, a role with only <c>integrations_app</c>'s
/// rights. Without an owner connection string the service's login is used (the service is then the owner, as before
/// 0015), still through a pool of its own: what a migration leaves on a session never reaches a request.
/// </summary>
public sealed class OwnerDatabase(NpgsqlDataSource dataSource) : IAsyncDisposable
{
    public const string ConnectionStringName = "IntegrationsOwner";

    public NpgsqlDataSource DataSource { get; } = dataSource;

    public ValueTask DisposeAsync() => DataSource.DisposeAsync();
}
