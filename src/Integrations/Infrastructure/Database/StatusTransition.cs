using Dapper;
using Integrations.Common;

namespace Integrations.Infrastructure.Database;

/// <summary>
/// A move in an area's status machine (integrations enable/disable, incidents acknowledge/resolve, MCP servers
/// disable/enable): the statuses it may start from, the one it ends in, and how a refusal reads
/// ("A {Subject} in status '{current}' cannot be {Verb}.").
/// </summary>
internal sealed record StatusTransition(string Subject, string[] From, string To, string Verb)
{
    /// <summary>
    /// Runs <paramref name="moveSql"/>: an UPDATE of the tenant's row <c>@Id</c>, guarded by <c>status = ANY(@From)</c>,
    /// that sets <c>@To</c> and returns the row. Guard and write are one statement, so two moves of a row take turns on
    /// its lock and the second is checked against the first's status. When nothing moved, <paramref name="statusSql"/>
    /// (the row's current status, or no row) tells 404 from 409 <c>invalid_transition</c>.
    /// <paramref name="values"/> adds parameters of the area's own (an actor, a reason).
    /// </summary>
    public async Task<Result<TRow>> RunAsync<TRow>(
        TenantSession session, Guid id, string moveSql, string statusSql, object? values, CancellationToken ct)
    {
        var connection = await session.ConnectionAsync(ct);
        var args = new DynamicParameters(new { session.TenantId, Id = id, From, To });
        if (values is not null) args.AddDynamicParams(values);
        var row = await connection.QuerySingleOrDefaultAsync<TRow>(new CommandDefinition(moveSql, args, cancellationToken: ct));
        if (row is not null) return row;
        var current = await connection.QuerySingleOrDefaultAsync<string>(
            new CommandDefinition(statusSql, new { session.TenantId, Id = id }, cancellationToken: ct));
        return current is null ? Error.NotFound(Subject) : Error.InvalidTransition(Subject, current, Verb);
    }
}
