using System.Text;
using System.Text.Json;
using Integrations.Common;
using Integrations.Infrastructure.Database;
using MediatR;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using ModelContextProtocol;
using ModelContextProtocol.Protocol;
using ModelContextProtocol.Server;

namespace Integrations.Features.McpGateway;

/// <summary>
/// Resources and prompts of the tenant's servers on <c>/mcp</c>, for servers with <c>expose_resources</c> /
/// <c>expose_prompts</c> on. A resource's URI becomes <c>mcp-gateway://&lt;server id&gt;/&lt;its URI, escaped&gt;</c>,
/// so a read finds its server whatever URIs two servers share; a prompt is named <c>&lt;server&gt;__&lt;prompt&gt;</c> as
/// tools are (<see cref="GatewayToolNames.Candidate"/>; when two servers' names come out the same, the server
/// registered first answers). Lists walk the servers in registration order, one upstream page per page; a server that
/// fails is left out of the list (logged) rather than failing it. Virtual servers serve tools only.
/// </summary>
public static class McpGatewayPassthrough
{
    public const string ResourceScheme = "mcp-gateway";

    /// <summary>How many pages of a server's prompts a prompts/get looks through for the prompt a gateway name stands for.</summary>
    private const int MaxPromptPages = 50;

    public static string ResourceUri(Guid serverId, string uri) => $"{ResourceScheme}://{serverId:N}/{Uri.EscapeDataString(uri)}";

    public static bool TryParseResourceUri(string gatewayUri, out Guid serverId, out string uri)
    {
        (serverId, uri) = (Guid.Empty, "");
        var prefix = ResourceScheme + "://";
        if (!gatewayUri.StartsWith(prefix, StringComparison.Ordinal) || gatewayUri.Length < prefix.Length + 33 || gatewayUri[prefix.Length + 32] != '/') return false;
        if (!Guid.TryParseExact(gatewayUri.AsSpan(prefix.Length, 32), "N", out serverId)) return false;
        uri = Uri.UnescapeDataString(gatewayUri[(prefix.Length + 33)..]);
        return uri.Length > 0;
    }

    public static async ValueTask<ListResourcesResult> ListResourcesAsync(RequestContext<ListResourcesRequestParams> context, CancellationToken ct)
    {
        var resources = new List<Resource>();
        var next = await WalkAsync(context, PassthroughServers.Kind.Resources, context.Params?.Cursor, async (mediator, server, cursor) =>
        {
            var page = await mediator.Send(new ListServerResources.Query(server.Id, cursor), ct);
            if (!page.IsSuccess) return (false, 0, null);
            foreach (var resource in page.Value.Resources.Select(r => r.Deserialize<Resource>(McpJsonUtilities.DefaultOptions)!))
            {
                resource.Uri = ResourceUri(server.Id, resource.Uri);
                resources.Add(resource);
            }
            return (true, page.Value.Resources.Count, page.Value.NextCursor);
        }, ct);
        return new ListResourcesResult { Resources = resources, NextCursor = next };
    }

    public static async ValueTask<ReadResourceResult> ReadResourceAsync(RequestContext<ReadResourceRequestParams> context, CancellationToken ct)
    {
        var gatewayUri = context.Params?.Uri ?? throw new McpProtocolException("resources/read needs a uri.", McpErrorCode.InvalidParams);
        if (McpGatewayEndpoint.VirtualServerOf(McpGatewayEndpoint.ServicesOf(context)) is not null || !TryParseResourceUri(gatewayUri, out var serverId, out var uri))
        {
            throw new McpProtocolException($"Unknown resource: '{gatewayUri}'.", McpErrorCode.ResourceNotFound);
        }
        var result = await McpGatewayEndpoint.ServicesOf(context).GetRequiredService<IMediator>().Send(new ReadServerResource.Command(serverId, uri), ct);
        if (!result.IsSuccess)
        {
            if (result.Error!.Code == "not_found") throw new McpProtocolException($"Unknown resource: '{gatewayUri}'.", McpErrorCode.ResourceNotFound);
            throw McpGatewayEndpoint.ProtocolError(result.Error);
        }
        var contents = result.Value.Contents.Select(c => c.Deserialize<ResourceContents>(McpJsonUtilities.DefaultOptions)!).ToList();
        // The contents name the resource as the client asked for it.
        foreach (var content in contents) content.Uri = ResourceUri(serverId, content.Uri);
        return new ReadResourceResult { Contents = contents };
    }

    public static async ValueTask<ListPromptsResult> ListPromptsAsync(RequestContext<ListPromptsRequestParams> context, CancellationToken ct)
    {
        var prompts = new List<Prompt>();
        var next = await WalkAsync(context, PassthroughServers.Kind.Prompts, context.Params?.Cursor, async (mediator, server, cursor) =>
        {
            var page = await mediator.Send(new ListServerPrompts.Query(server.Id, cursor), ct);
            if (!page.IsSuccess) return (false, 0, null);
            foreach (var prompt in page.Value.Prompts.Select(p => p.Deserialize<Prompt>(McpJsonUtilities.DefaultOptions)!))
            {
                prompt.Name = GatewayToolNames.Candidate(server.Name, prompt.Name);
                prompts.Add(prompt);
            }
            return (true, page.Value.Prompts.Count, page.Value.NextCursor);
        }, ct);
        return new ListPromptsResult { Prompts = prompts, NextCursor = next };
    }

    public static async ValueTask<GetPromptResult> GetPromptAsync(RequestContext<GetPromptRequestParams> context, CancellationToken ct)
    {
        var name = context.Params?.Name ?? throw new McpProtocolException("prompts/get needs a name.", McpErrorCode.InvalidParams);
        var services = McpGatewayEndpoint.ServicesOf(context);
        var mediator = services.GetRequiredService<IMediator>();
        if (McpGatewayEndpoint.VirtualServerOf(services) is null)
        {
            var servers = await PassthroughServers.ListAsync(services.GetRequiredService<TenantSession>(), PassthroughServers.Kind.Prompts, ct);
            foreach (var server in servers)
            {
                if (!name.StartsWith(GatewayToolNames.Candidate(server.Name, "")[..^1], StringComparison.Ordinal)) continue;
                // The gateway name may have replaced characters of the prompt's own: the server's list says which prompt it is.
                string? cursor = null;
                for (var pages = 0; pages == 0 || (cursor is not null && pages < MaxPromptPages); pages++)
                {
                    var page = await mediator.Send(new ListServerPrompts.Query(server.Id, cursor), ct);
                    if (!page.IsSuccess) throw McpGatewayEndpoint.ProtocolError(page.Error!);
                    var prompt = page.Value.Prompts.Select(p => p.GetProperty("name").GetString()!).FirstOrDefault(p => GatewayToolNames.Candidate(server.Name, p) == name);
                    if (prompt is not null)
                    {
                        var arguments = context.Params.Arguments?.ToDictionary(a => a.Key, a => a.Value);
                        var got = await mediator.Send(new GetServerPrompt.Command(server.Id, prompt, arguments), ct);
                        if (!got.IsSuccess) throw McpGatewayEndpoint.ProtocolError(got.Error!);
                        return new GetPromptResult
                        {
                            Description = got.Value.Description,
                            Messages = got.Value.Messages.Select(m => m.Deserialize<PromptMessage>(McpJsonUtilities.DefaultOptions)!).ToList(),
                        };
                    }
                    cursor = page.Value.NextCursor;
                }
            }
        }
        throw new McpProtocolException($"Unknown prompt: '{name}'.", McpErrorCode.InvalidParams);
    }

    /// <summary>
    /// Fills one page from the exposing servers in order, starting at the cursor's server and upstream cursor; answers
    /// the next cursor (<c>&lt;server id&gt;:&lt;upstream cursor&gt;</c>, base64). <paramref name="page"/> adds one
    /// upstream page and answers whether it succeeded, how many items it added and the upstream's next cursor; a server
    /// that fails is left out, one with nothing to offer is passed over.
    /// </summary>
    private static async Task<string?> WalkAsync<TParams>(
        RequestContext<TParams> context, PassthroughServers.Kind kind, string? cursor,
        Func<IMediator, PassthroughServers.Server, string?, Task<(bool Ok, int Added, string? Next)>> page, CancellationToken ct)
    {
        var services = McpGatewayEndpoint.ServicesOf(context);
        if (McpGatewayEndpoint.VirtualServerOf(services) is not null) return null;
        var mediator = services.GetRequiredService<IMediator>();
        // Reading needs a scope the list does: the caller learns nothing of the servers without integrations:read.
        var caller = services.GetRequiredService<CallerContext>().Current;
        if (caller is null || !caller.Has(Scopes.Read)) throw new McpProtocolException($"Listing needs the scope '{Scopes.Read}'.", McpErrorCode.InvalidRequest);
        var servers = await PassthroughServers.ListAsync(services.GetRequiredService<TenantSession>(), kind, ct);

        var (start, upstream) = (0, (string?)null);
        if (cursor is not null)
        {
            if (!TryDecode(cursor, out var serverId, out upstream)) throw new McpProtocolException("Invalid cursor.", McpErrorCode.InvalidParams);
            start = servers.ToList().FindIndex(s => s.Id == serverId);
            if (start < 0) return null; // the server stopped passing them through: nothing follows
        }
        var added = 0;
        for (var i = start; i < servers.Count; i++)
        {
            var (ok, count, next) = await page(mediator, servers[i], i == start ? upstream : null);
            if (!ok)
            {
                services.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(McpGatewayPassthrough))
                    .LogWarning("MCP server {ServerId} failed to list its {Kind}; the gateway's list goes on without them.", servers[i].Id, kind);
                continue;
            }
            added += count;
            if (next is not null) return Encode(servers[i].Id, next);
            if (added > 0) return i + 1 < servers.Count ? Encode(servers[i + 1].Id, null) : null;
        }
        return null;
    }

    private static string Encode(Guid serverId, string? upstream) =>
        Convert.ToBase64String(Encoding.UTF8.GetBytes($"{serverId:N}:{upstream}"));

    private static bool TryDecode(string cursor, out Guid serverId, out string? upstream)
    {
        (serverId, upstream) = (Guid.Empty, null);
        try
        {
            var text = Encoding.UTF8.GetString(Convert.FromBase64String(cursor));
            if (text.Length < 33 || text[32] != ':' || !Guid.TryParseExact(text.AsSpan(0, 32), "N", out serverId)) return false;
            upstream = text.Length > 33 ? text[33..] : null;
            return true;
        }
        catch (FormatException)
        {
            return false;
        }
    }
}
