using Dapper;
using Integrations.Common;
using Integrations.Features.McpServers;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Mcp;
using Integrations.Infrastructure.Vault;

namespace Integrations.Features.McpGateway;

/// <summary>
/// The servers whose resources or prompts the MCP gateway passes through: live, not disabled, with
/// <c>expose_resources</c> / <c>expose_prompts</c> on (migration 0028; off by default), in registration order.
/// </summary>
public static class PassthroughServers
{
    public enum Kind
    {
        Resources,
        Prompts,
    }

    public sealed record Server(Guid Id, string Name);

    private static string Flag(Kind kind) => kind == Kind.Resources ? "expose_resources" : "expose_prompts";

    /// <summary>Which of the caller's tenant's servers pass <paramref name="kind"/> through, in registration order.</summary>
    public static async Task<IReadOnlyList<Server>> ListAsync(TenantSession session, Kind kind, CancellationToken ct)
    {
        var connection = await session.ConnectionAsync(ct);
        var servers = await connection.QueryAsync<Server>(new CommandDefinition($"""
            SELECT id, name FROM mcp_servers
            WHERE tenant_id = @TenantId AND deleted_at IS NULL AND status <> 'disabled' AND {Flag(kind)}
            ORDER BY created_at, id
            """, new { session.TenantId }, cancellationToken: ct));
        await session.RollbackAsync();
        return servers.AsList();
    }

    /// <summary>
    /// The endpoint of server <paramref name="id"/> when it passes <paramref name="kind"/> through, with the credential
    /// the credential behavior resolved; 404 otherwise (unknown, another tenant's, disabled, or not exposing it).
    /// No transaction stays open while the server is asked.
    /// </summary>
    /// <summary>
    /// Asks server <paramref name="id"/> (when it passes <paramref name="kind"/> through; see <see cref="EndpointAsync"/>)
    /// with <paramref name="read"/>: its answer and the server's name, or the refusal or upstream error.
    /// </summary>
    internal static async Task<Result<(T Answer, string Name)>> AskAsync<T>(TenantSession session, CredentialContext credentials,
        McpSessions sessions, Guid id, Kind kind, Func<ModelContextProtocol.Client.McpClient, CancellationToken, ValueTask<T>> read, CancellationToken ct)
    {
        var server = await EndpointAsync(session, credentials, id, kind, ct);
        if (!server.IsSuccess) return server.Error!;
        var answer = await sessions.ReadAsync(server.Value.Endpoint, read, ct);
        if (!answer.IsSuccess) return answer.Error!;
        return (answer.Value, server.Value.Name);
    }

    internal static async Task<Result<(McpEndpoint Endpoint, string Name)>> EndpointAsync(
        TenantSession session, CredentialContext credentials, Guid id, Kind kind, CancellationToken ct)
    {
        var server = await McpServer.FindAsync(session, id, ct);
        await session.RollbackAsync();
        if (server is null || server.Status == McpServer.Disabled || !(kind == Kind.Resources ? server.ExposeResources : server.ExposePrompts))
        {
            return Error.NotFound("MCP server");
        }
        var auth = McpServer.AuthFrom(credentials.Current, server.AuthHeader);
        if (!auth.IsSuccess) return auth.Error!;
        return (server.Endpoint(session.TenantId, auth.Value), server.Name);
    }
}
