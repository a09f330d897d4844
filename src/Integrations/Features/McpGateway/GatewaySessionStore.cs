using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Integrations.Common;
using Integrations.Infrastructure.Database;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using ModelContextProtocol;
using ModelContextProtocol.AspNetCore;
using ModelContextProtocol.Protocol;
using Npgsql;

namespace Integrations.Features.McpGateway;

/// <summary>
/// Keeps what an <c>/mcp</c> session's <c>initialize</c> established (migration 0028), so a request that carries the
/// session's <c>Mcp-Session-Id</c> is served by whichever replica it reaches: one that does not hold the session
/// re-creates it from the stored handshake. The session continues only for the API key that opened it and at the path
/// it was opened on (<c>/mcp</c> or one virtual server); after <see cref="Lifetime"/> it must be opened again.
/// </summary>
public sealed class GatewaySessionStore(NpgsqlDataSource dataSource, TimeProvider time) : ISessionMigrationHandler
{
    /// <summary>How long a stored session may be continued on another replica.</summary>
    public static readonly TimeSpan Lifetime = TimeSpan.FromDays(1);

    private const string PruneSql = "DELETE FROM mcp_gateway_sessions WHERE tenant_id = $1 AND created_at < $2";

    private const string InsertSql = """
        INSERT INTO mcp_gateway_sessions (tenant_id, session_hash, actor, virtual_server, initialize_params, created_at)
        VALUES ($1, $2, $3, $4, $5::jsonb, $6) ON CONFLICT DO NOTHING
        """;

    private const string FindSql = """
        SELECT initialize_params::text FROM mcp_gateway_sessions
        WHERE tenant_id = $1 AND session_hash = $2 AND actor = $3 AND virtual_server = $4 AND created_at >= $5
        """;

    public async ValueTask OnSessionInitializedAsync(HttpContext context, string sessionId, InitializeRequestParams initializeParams, CancellationToken cancellationToken)
    {
        if (CallerOf(context) is not { } caller) return;
        var now = time.GetUtcNow();
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var batch = TenantSession.Batch(connection, caller.TenantId);
        batch.BatchCommands.Add(Command(PruneSql, caller.TenantId, now - Lifetime));
        batch.BatchCommands.Add(Command(InsertSql, caller.TenantId, Hash(sessionId), caller.Actor, VirtualServerOf(context),
            JsonSerializer.Serialize(initializeParams, McpJsonUtilities.DefaultOptions), now));
        await batch.ExecuteNonQueryAsync(cancellationToken);
    }

    public async ValueTask<InitializeRequestParams?> AllowSessionMigrationAsync(HttpContext context, string sessionId, CancellationToken cancellationToken)
    {
        if (CallerOf(context) is not { } caller) return null;
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var batch = TenantSession.Batch(connection, caller.TenantId);
        batch.BatchCommands.Add(Command(FindSql, caller.TenantId, Hash(sessionId), caller.Actor, VirtualServerOf(context), time.GetUtcNow() - Lifetime));
        await using var reader = await batch.ExecuteReaderAsync(cancellationToken);
        await reader.NextResultAsync(cancellationToken); // past the tenant pin's row
        if (!await reader.ReadAsync(cancellationToken)) return null;
        return JsonSerializer.Deserialize<InitializeRequestParams>(reader.GetString(0), McpJsonUtilities.DefaultOptions);
    }

    private static NpgsqlBatchCommand Command(string sql, params object[] values)
    {
        var command = new NpgsqlBatchCommand(sql);
        foreach (var value in values) command.Parameters.Add(new NpgsqlParameter { Value = value });
        return command;
    }

    private static Caller? CallerOf(HttpContext context) => context.RequestServices.GetRequiredService<CallerContext>().Current;

    private static string VirtualServerOf(HttpContext context) =>
        context.GetRouteValue(McpGatewayEndpoint.VirtualServerRouteValue) as string ?? "";

    private static byte[] Hash(string sessionId) => SHA256.HashData(Encoding.UTF8.GetBytes(sessionId));
}
