using System.Net;
using Integrations.Common;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;
using Microsoft.Net.Http.Headers;

namespace Integrations.Infrastructure.Http;

/// <summary>
/// DNS rebinding protection (the MCP transport's security warning, for every route): a page on another site that made its
/// host name resolve to this service must not reach it through the visitor's browser.
/// <list type="bullet">
/// <item>A request with an <c>Origin</c> is served only from the service's own origin (its host and port are the <c>Host</c>) or an origin
/// listed in <see cref="CorsOrigins"/>; any other, <c>null</c> included, is refused 403 <c>origin_not_allowed</c>.</item>
/// <item>While the service listens on loopback addresses only (<c>./build.sh run</c>'s default), the <c>Host</c> must name a
/// loopback host (<c>localhost</c>, <c>*.localhost</c>, <c>127.0.0.0/8</c>, <c>[::1]</c>), else 403 <c>host_not_allowed</c>.
/// A service listening on other addresses names its hosts with ASP.NET Core's <c>AllowedHosts</c>.</item>
/// </list>
/// Agents and programs send no <c>Origin</c>; the console's own forms send their own origin.
/// </summary>
public sealed class RebindingGuard(RequestDelegate next, IServer server, IConfiguration configuration)
{
    private readonly HashSet<string> _origins = new(CorsOrigins.FromConfiguration(configuration), StringComparer.OrdinalIgnoreCase);
    private bool? _loopbackOnly;

    public Task InvokeAsync(HttpContext context)
    {
        if (!IsLoopbackName(context.Request.Host.Host) && (_loopbackOnly ??= ListensOnLoopbackOnly()))
        {
            return Problems.WriteAsync(context, new Error("host_not_allowed", 403, "Host not allowed.",
                "This service listens on loopback addresses only and answers only to a loopback host name (localhost, 127.0.0.1, [::1])."));
        }
        if (context.Request.Headers.TryGetValue(HeaderNames.Origin, out var origins) && !IsAllowedOrigin(context.Request, origins.ToString()))
        {
            return Problems.WriteAsync(context, new Error("origin_not_allowed", 403, "Origin not allowed.",
                "A page of another origin may not call this service; list its origin in Integrations:Http:CorsOrigins to allow it."));
        }
        return next(context);
    }

    /// <remarks>
    /// The own origin is judged by its host and port against <c>Host</c>, not by its scheme: behind a proxy that ends TLS
    /// the browser's origin is https while the request reaches the service as http.
    /// </remarks>
    private bool IsAllowedOrigin(HttpRequest request, string origin) =>
        _origins.Contains(origin)
        || (Uri.TryCreate(origin, UriKind.Absolute, out var uri) && uri.Scheme is ("http" or "https")
            && string.Equals(uri.Authority, request.Host.Value, StringComparison.OrdinalIgnoreCase));

    private bool ListensOnLoopbackOnly()
    {
        var addresses = server.Features.Get<IServerAddressesFeature>()?.Addresses;
        // In-memory hosts (tests) have no addresses: nothing says they are local, so the host rule does not apply.
        return addresses is { Count: > 0 } && addresses.All(a => Uri.TryCreate(a, UriKind.Absolute, out var uri) && IsLoopbackName(uri.Host));
    }

    private static bool IsLoopbackName(string host) =>
        host.Equals("localhost", StringComparison.OrdinalIgnoreCase)
        || host.EndsWith(".localhost", StringComparison.OrdinalIgnoreCase)
        || (IPAddress.TryParse(host.Trim('[', ']'), out var address) && IPAddress.IsLoopback(address));
}
