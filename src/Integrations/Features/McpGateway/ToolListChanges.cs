using System.Security.Cryptography;
using System.Text;
using Integrations.Common;
using Integrations.Features.Policies;
using Integrations.Infrastructure.Database;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using ModelContextProtocol;
using ModelContextProtocol.Protocol;
using ModelContextProtocol.Server;

namespace Integrations.Features.McpGateway;

/// <summary>
/// Sends <c>notifications/tools/list_changed</c> to the <c>/mcp</c> sessions this replica holds when what their tenant
/// may call changes. Every replica hears the change notifications (<c>tools:&lt;tenant&gt;</c> from migration 0018's
/// triggers, <c>policy:&lt;tenant&gt;</c> from policy updates), reads the tenant's callable set again and notifies the
/// sessions whose list — the whole tenant's, or one virtual server's — came out different; a session's GET stream is
/// on one replica, and that replica is the one whose copy of the session delivers it (the SDK drops the notification on a
/// copy without a stream). Changes that leave a list as it was (a rate limit, a rediscovery with no drift) send nothing.
/// </summary>
public sealed class ToolListChanges : IDisposable
{
    /// <summary>Changes arriving this close together are read once.</summary>
    private static readonly TimeSpan Settle = TimeSpan.FromMilliseconds(100);

    private readonly Dictionary<string, TenantSessions> _tenants = new(StringComparer.Ordinal);
    private readonly Lock _gate = new();
    private readonly IServiceScopeFactory _scopes;
    private readonly ChangeNotifications _changes;
    private readonly ILogger<ToolListChanges> _logger;

    public ToolListChanges(IServiceScopeFactory scopes, ChangeNotifications changes, ILogger<ToolListChanges> logger)
    {
        (_scopes, _changes, _logger) = (scopes, changes, logger);
        changes.Changed += OnChanged;
        changes.Reset += OnReset;
    }

    public void Dispose()
    {
        _changes.Changed -= OnChanged;
        _changes.Reset -= OnReset;
    }

    /// <summary>Watches <paramref name="server"/>'s tenant for it until <paramref name="ct"/> ends the session.</summary>
    public async Task WatchAsync(McpServer server, string tenantId, string? virtualServer, CancellationToken ct)
    {
        _ = _changes.IsListening; // starts the listener on a replica that has not needed it yet
        var session = new Session(server, virtualServer ?? "");
        TenantSessions tenant;
        bool needsBaseline;
        lock (_gate)
        {
            if (!_tenants.TryGetValue(tenantId, out tenant!)) _tenants[tenantId] = tenant = new TenantSessions(tenantId);
            tenant.Sessions.Add(session);
            needsBaseline = !tenant.Lists.ContainsKey(session.Selection);
        }
        if (needsBaseline) Schedule(tenant, changed: false);
        try
        {
            await Task.Delay(Timeout.Infinite, ct);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // The session ended.
        }
        finally
        {
            lock (_gate)
            {
                tenant.Sessions.Remove(session);
                if (tenant.Sessions.Count == 0 && _tenants.GetValueOrDefault(tenantId) == tenant) _tenants.Remove(tenantId);
            }
        }
    }

    private void OnChanged(string key)
    {
        string tenantId;
        if (key.StartsWith(GatewayCatalog.ChangeKeyPrefix, StringComparison.Ordinal)) tenantId = key[GatewayCatalog.ChangeKeyPrefix.Length..];
        else if (key.StartsWith(ToolPolicyStore.ChangeKeyPrefix, StringComparison.Ordinal)) tenantId = key[ToolPolicyStore.ChangeKeyPrefix.Length..];
        else return;
        if (tenantId == "*")
        {
            OnReset();
            return;
        }
        TenantSessions? tenant;
        lock (_gate) _tenants.TryGetValue(tenantId, out tenant);
        if (tenant is not null) Schedule(tenant, changed: true);
    }

    /// <summary>Notifications may have been missed: every tenant's lists are read again.</summary>
    private void OnReset()
    {
        TenantSessions[] all;
        lock (_gate) all = [.. _tenants.Values];
        foreach (var tenant in all) Schedule(tenant, changed: true);
    }

    /// <summary>One reader per tenant at a time; a change that arrives while it reads makes it read once more.</summary>
    private void Schedule(TenantSessions tenant, bool changed)
    {
        lock (_gate)
        {
            tenant.Pending = true;
            tenant.Changed |= changed;
            if (tenant.Reading) return;
            tenant.Reading = true;
        }
        _ = Task.Run(() => ReadAsync(tenant));
    }

    private async Task ReadAsync(TenantSessions tenant)
    {
        while (true)
        {
            await Task.Delay(Settle);
            bool changed;
            string[] selections;
            lock (_gate)
            {
                if (!tenant.Pending || tenant.Sessions.Count == 0)
                {
                    tenant.Reading = false;
                    return;
                }
                changed = tenant.Changed;
                tenant.Pending = tenant.Changed = false;
                selections = [.. tenant.Sessions.Select(s => s.Selection).Distinct(StringComparer.Ordinal)];
            }
            try
            {
                var lists = await FingerprintsAsync(tenant.TenantId, selections);
                List<Session> notify = [];
                lock (_gate)
                {
                    foreach (var (selection, fingerprint) in lists)
                    {
                        var known = tenant.Lists.TryGetValue(selection, out var before);
                        tenant.Lists[selection] = fingerprint;
                        // A session that joined before its list was first read is told too: what it listed may be older.
                        if (changed && (!known || before != fingerprint)) notify.AddRange(tenant.Sessions.Where(s => s.Selection == selection));
                    }
                }
                foreach (var session in notify) await NotifyAsync(session);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                _logger.LogWarning(e, "Could not read the callable tools of tenant {TenantId} to tell its MCP sessions about a change.", tenant.TenantId);
                lock (_gate) tenant.Lists.Clear(); // unknown now: the next change notifies every session
            }
        }
    }

    private async Task NotifyAsync(Session session)
    {
        try
        {
            await session.Server.SendNotificationAsync(NotificationMethods.ToolListChangedNotification, CancellationToken.None);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException or OperationCanceledException)
        {
            // The session ended meanwhile; its client lists again when it reconnects.
        }
    }

    /// <summary>Per selection ("" for all of the tenant's tools, else a virtual server's name), a digest of the tools it offers now.</summary>
    private async Task<Dictionary<string, string>> FingerprintsAsync(string tenantId, string[] selections)
    {
        await using var scope = _scopes.CreateAsyncScope();
        var services = scope.ServiceProvider;
        services.GetRequiredService<CallerContext>().Set(new Caller(tenantId, "system:mcp-gateway", new HashSet<string>(), IsSystem: true));
        var session = services.GetRequiredService<TenantSession>();
        var connection = await session.ConnectionAsync(CancellationToken.None);
        var snapshot = await services.GetRequiredService<GatewayCatalog>().GetAsync(connection, tenantId, CancellationToken.None, readThrough: true);
        var policy = await services.GetRequiredService<ToolPolicyStore>().GetAsync(connection, tenantId, CancellationToken.None);
        await session.RollbackAsync();

        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var selection in selections)
        {
            var text = new StringBuilder();
            if (selection.Length == 0 || snapshot.VirtualServers.TryGetValue(selection, out _))
            {
                var within = selection.Length == 0 ? null : snapshot.VirtualServers[selection];
                foreach (var tool in snapshot.Callable(policy, null, int.MaxValue, within).Page)
                {
                    foreach (var part in (string?[])[tool.Name, tool.Title, tool.Description, tool.InputSchema, tool.OutputSchema, tool.Annotations])
                    {
                        text.Append(part?.Length ?? -1).Append(':').Append(part).Append('\n');
                    }
                }
            }
            result[selection] = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString())));
        }
        return result;
    }

    private sealed record Session(McpServer Server, string Selection)
    {
        // Identity, not value: two sessions of one tenant at one path are two entries.
        public bool Equals(Session? other) => ReferenceEquals(this, other);

        public override int GetHashCode() => System.Runtime.CompilerServices.RuntimeHelpers.GetHashCode(this);
    }

    private sealed class TenantSessions(string tenantId)
    {
        public string TenantId { get; } = tenantId;
        public List<Session> Sessions { get; } = [];
        public Dictionary<string, string> Lists { get; } = new(StringComparer.Ordinal);
        public bool Pending { get; set; }
        public bool Changed { get; set; }
        public bool Reading { get; set; }
    }
}
