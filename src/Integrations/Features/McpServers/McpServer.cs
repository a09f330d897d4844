using System.Text.Json;
using Dapper;
using FluentValidation;
using Integrations.Common;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Mcp;
using Integrations.Infrastructure.Network;
using Integrations.Infrastructure.Vault;

namespace Integrations.Features.McpServers;

/// <summary>What the mcp_servers.* slices share: the shape they answer with, the row they read, and the field rules.</summary>
public static class McpServer
{
    public const string SubjectType = "mcp_server";

    public static readonly string[] Statuses = ["pending", "active", "degraded", "unreachable", "disabled"];

    /// <summary>Set only by mcp_servers.disable; probes and discovery never override it, and tools.invoke refuses its tools.</summary>
    public const string Disabled = "disabled";

    /// <summary>Not yet known to answer: set by mcp_servers.enable until the next health check or discovery.</summary>
    public const string Pending = "pending";

    /// <summary>The longest reason an admin can give for disabling or enabling a server.</summary>
    public const int MaxReasonLength = 500;

    public sealed record Response(
        Guid Id,
        string Name,
        string Url,
        string Transport,
        string? CredentialRef,
        string AuthHeader,
        [OneOf(typeof(McpServer), nameof(McpServer.Statuses))] string Status,
        string? ProtocolVersion,
        string? ServerName,
        string? ServerVersion,
        JsonElement Capabilities,
        int ToolCount,
        DateTimeOffset? DiscoveredAt,
        DateTimeOffset? LastHealthCheckAt,
        int? HealthLatencyMs,
        string? HealthDetail,
        bool ExposeResources,
        bool ExposePrompts,
        DateTimeOffset CreatedAt,
        DateTimeOffset UpdatedAt);

    /// <summary>Columns of <see cref="Row"/>, for a query that names mcp_servers <c>s</c>.</summary>
    internal const string Columns = """
        s.id, s.name, s.url, s.transport, s.credential_ref, s.auth_header, s.status, s.protocol_version, s.server_name,
        s.server_version, s.capabilities::text AS capabilities, s.discovered_at, s.last_health_check_at, s.health_latency_ms,
        s.health_detail, s.expose_resources, s.expose_prompts, s.created_at, s.updated_at,
        (SELECT count(*)::int FROM mcp_tools t WHERE t.tenant_id = s.tenant_id AND t.server_id = s.id AND t.status <> 'removed') AS tool_count
        """;

    internal class Row
    {
        public Guid Id { get; init; }
        public required string Name { get; init; }
        public required string Url { get; init; }
        public required string Transport { get; init; }
        public string? CredentialRef { get; init; }
        public required string AuthHeader { get; init; }
        public required string Status { get; init; }
        public string? ProtocolVersion { get; init; }
        public string? ServerName { get; init; }
        public string? ServerVersion { get; init; }
        public string Capabilities { get; init; } = "{}";
        public DateTimeOffset? DiscoveredAt { get; init; }
        public DateTimeOffset? LastHealthCheckAt { get; init; }
        public int? HealthLatencyMs { get; init; }
        public string? HealthDetail { get; init; }
        public bool ExposeResources { get; init; }
        public bool ExposePrompts { get; init; }
        public DateTimeOffset CreatedAt { get; init; }
        public DateTimeOffset UpdatedAt { get; init; }
        public int ToolCount { get; init; }

        public Response ToResponse() => new(
            Id, Name, Url, Transport, CredentialRef, AuthHeader, Status, ProtocolVersion, ServerName, ServerVersion,
            JsonDocument.Parse(Capabilities).RootElement.Clone(), ToolCount, DiscoveredAt, LastHealthCheckAt,
            HealthLatencyMs, HealthDetail, ExposeResources, ExposePrompts, CreatedAt, UpdatedAt);

        public McpEndpoint Endpoint(string tenantId, McpServerAuth? auth) => new(tenantId, Id, new Uri(Url), auth, Transport);
    }

    /// <summary>The live server with this id in the request's tenant, or null.</summary>
    internal static async Task<Row?> FindAsync(TenantSession session, Guid id, CancellationToken ct, bool forUpdate = false)
    {
        var connection = await session.ConnectionAsync(ct);
        var sql = $"SELECT {Columns} FROM mcp_servers s WHERE s.tenant_id = @TenantId AND s.id = @Id AND s.deleted_at IS NULL"
            + (forUpdate ? " FOR UPDATE OF s" : string.Empty);
        return await connection.QuerySingleOrDefaultAsync<Row>(new CommandDefinition(sql, new { session.TenantId, Id = id }, cancellationToken: ct));
    }

    /// <summary>Any live status but <c>disabled</c> → <c>disabled</c>.</summary>
    internal static readonly StatusTransition Disabling = new("MCP server", Statuses.Where(s => s != Disabled).ToArray(), Disabled, "disabled");

    /// <summary><c>disabled</c> → <c>pending</c> (nothing has checked the server yet).</summary>
    internal static readonly StatusTransition Enabling = new("MCP server", [Disabled], Pending, "enabled (only a disabled server is)");

    private const string MoveSql = $"""
        WITH before AS (
            SELECT id, status FROM mcp_servers
            WHERE tenant_id = @TenantId AND id = @Id AND deleted_at IS NULL AND status = ANY(@From)
            FOR UPDATE)
        UPDATE mcp_servers s SET status = @To, updated_at = now()
        FROM before WHERE s.id = before.id
        RETURNING before.status AS previous_status, {Columns}
        """;

    private const string StatusSql = "SELECT status FROM mcp_servers WHERE tenant_id = @TenantId AND id = @Id AND deleted_at IS NULL";

    internal sealed class MovedRow : Row
    {
        public required string PreviousStatus { get; init; }
    }

    /// <summary>
    /// Moves a live server of the request's tenant and records the move with its reason for the audit trail. The row
    /// stays locked until the request's transaction commits, so two moves take turns.
    /// </summary>
    internal static async Task<Result<Row>> MoveAsync(
        TenantSession session, AuditTrail audit, StatusTransition transition, Guid id, string? reason, CancellationToken ct)
    {
        var moved = await transition.RunAsync<MovedRow>(session, id, MoveSql, StatusSql, null, ct);
        if (!moved.IsSuccess) return moved.Error!;
        var after = moved.Value;
        audit.Record(SubjectType, id.ToString(), new
        {
            after.Name,
            after.PreviousStatus,
            after.Status,
            Reason = string.IsNullOrEmpty(reason) ? null : reason,
        });
        return after;
    }

    internal static IRuleBuilderOptions<T, string?> ValidStatusReason<T>(this IRuleBuilder<T, string?> rule) =>
        rule.MaximumLength(MaxReasonLength).WithMessage($"Reason may be at most {MaxReasonLength} characters.");

    /// <summary>
    /// The header a resolved credential becomes: a key or token goes in the server's auth header (Bearer for
    /// Authorization), a basic_auth credential becomes <c>Authorization: Basic</c>; a client_certificate is presented
    /// in the TLS handshake instead. No credential, no header.
    /// </summary>
    internal static Result<McpServerAuth?> AuthFrom(ResolvedCredential? credential, string authHeader)
    {
        if (credential is null) return Result<McpServerAuth?>.Ok(null);
        if (credential.Type == CredentialTypes.ClientCertificate)
        {
            var identity = ClientCertificate.Of(credential, DateTimeOffset.UtcNow);
            return identity.IsSuccess ? McpServerAuth.MutualTls(identity.Value) : identity.Error!;
        }
        if (credential.Token is { Length: > 0 } token) return McpServerAuth.Token(authHeader, token);
        if (credential is { Type: CredentialTypes.BasicAuth, Username: { } user, Password: { } password }
            && string.Equals(authHeader, McpServerAuth.DefaultHeader, StringComparison.OrdinalIgnoreCase))
        {
            return McpServerAuth.Basic(user, password);
        }
        return Error.Validation("credential_ref",
            $"The attached credential (type {credential.Type}) carries no token for the '{authHeader}' header; attach an api_key or bearer_token credential.");
    }

    internal static IRuleBuilderOptions<T, string?> ValidServerName<T>(this IRuleBuilder<T, string?> rule) =>
        rule.NotEmpty().WithMessage("Name is required.")
            .MaximumLength(200).WithMessage("Name may be at most 200 characters.")
            .Must(n => n is null || n.Trim() == n).WithMessage("Name may not start or end with whitespace.");

    /// <summary>A reference of this tenant (never a raw secret, a legacy or an env:// reference); the error says what to do instead.</summary>
    internal static IRuleBuilderOptions<T, string?> ValidServerCredentialRef<T>(this IRuleBuilder<T, string?> rule, Func<string> tenantId) =>
        rule.Must((owner, value, context) =>
        {
            if (CredentialReference.TryParse(value, tenantId(), systemScope: false, out _, out var error)) return true;
            context.MessageFormatter.AppendArgument("Reason", error);
            return false;
        }).WithMessage("{Reason}");

    /// <summary>
    /// Shape only: an absolute URL without credentials or fragment. Whether the scheme and address may be reached
    /// is the SSRF guard's call, so those refusals answer <c>ssrf_blocked</c>, not a validation error.
    /// </summary>
    internal static IRuleBuilderOptions<T, string?> ValidServerUrl<T>(this IRuleBuilder<T, string?> rule) =>
        rule.NotEmpty().WithMessage("Url is required.")
            .Must(url => url is null || EgressUrl.Problem(url) is null)
            .WithMessage($"Url must be an absolute URL of at most {EgressUrl.MaxLength} characters without user info or fragment, e.g. https://mcp.example.com/mcp.");

    // Headers the transport itself owns; a secret must not replace them.
    private static readonly HashSet<string> ReservedHeaders = new(StringComparer.OrdinalIgnoreCase)
    {
        "Host", "Content-Type", "Content-Length", "Transfer-Encoding", "Connection", "Accept", "Cookie", "Upgrade",
        "Mcp-Session-Id", "Mcp-Protocol-Version", "Mcp-Method", "Mcp-Name", "Last-Event-ID",
    };

    internal static IRuleBuilderOptions<T, string?> ValidAuthHeader<T>(this IRuleBuilder<T, string?> rule) =>
        rule.Must(h => h is null || (h.Length is > 0 and <= 100 && h.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_') && !ReservedHeaders.Contains(h)))
            .WithMessage("Auth header must be a plain header name (letters, digits, '-', '_'), not one the MCP transport uses itself.");
}
