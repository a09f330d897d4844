using Integrations.Common;
using Integrations.Infrastructure.Database;

namespace Integrations.Features.McpGateway;

/// <summary>
/// Finds the tool a gateway name stands for, for a call by name (<c>tools/call</c> on <c>/mcp</c>, REST
/// <c>POST /tools/{name}/invoke</c>); the caller then sends <c>tools.invoke</c> itself with the tool's ids, so a call by
/// name is the governed call, not a copy of it. A name the tenant has no tool under — or, through a virtual server, a
/// tool that virtual server does not serve — is 404 <c>not_found</c>, as another tenant's tool would be.
/// </summary>
public sealed class GatewayToolResolver(TenantSession session, CallerContext caller, GatewayCatalog catalog)
{
    public async Task<Result<GatewayTool>> ResolveAsync(string name, string? virtualServer, CancellationToken ct)
    {
        // The scope of the call it leads to, checked first so that a caller who may not call learns nothing by asking.
        if (caller.Current is not { } current) return Error.Unauthenticated("The request carries no caller context.");
        if (!current.Has(Scopes.Invoke)) return Error.Forbidden($"Calling a tool needs the scope '{Scopes.Invoke}'.");

        var cached = catalog.TryGetCached(session.TenantId, out var snapshot);
        if (!cached || !snapshot!.ByName.ContainsKey(name) || (virtualServer is not null && !snapshot.VirtualServers.ContainsKey(virtualServer)))
        {
            // A name missing from this replica's copy may belong to a tool registered a moment ago, before the
            // change notification arrived: a miss always reads the catalog again.
            snapshot = await catalog.GetAsync(await session.ConnectionAsync(ct), session.TenantId, ct, readThrough: cached);
            // The governed call opens what it needs; no transaction of ours stays open across the upstream call.
            await session.RollbackAsync();
        }
        if (!snapshot.ByName.TryGetValue(name, out var tool)
            || (virtualServer is not null && !(snapshot.VirtualServers.TryGetValue(virtualServer, out var within) && tool.IsIn(within))))
        {
            return new Error("not_found", 404, "Not found.", $"No tool is named '{name}'; GET /tools lists the tools you can call.");
        }
        return tool;
    }
}
