using System.Net;
using System.Net.Sockets;
using Integrations.Common;

using Integrations.Infrastructure.Vault;

namespace Integrations.Infrastructure.Network;

/// <summary>Raised inside a connect attempt the guard refused; <see cref="SsrfGuard.IsBlocked"/> finds it in an exception chain.</summary>
public sealed class SsrfBlockedException(string message) : Exception(message);

/// <summary>
/// The one egress guard: every outbound connection (MCP servers, provider base URLs, datasource hosts, connectors)
/// goes through here. URLs must have the <see cref="EgressUrl"/> shape and the http or https scheme (plain http only
/// for hosts the <see cref="EgressAllowList"/> opens); the host is resolved and every address judged against
/// <see cref="SpecialPurposeAddresses"/> (IPv4 carried inside IPv6 judged too); the connection goes to the address
/// that was judged, so a DNS answer that changes between check and connect cannot slip through. Hosts and CIDR
/// blocks on the allow-list are the only exceptions.
/// </summary>
public sealed class SsrfGuard(EgressAllowList allowList)
{
    /// <summary>The DNS seam: tests play answers here (including answers that change between check and connect).</summary>
    public Func<string, CancellationToken, Task<IPAddress[]>> Resolve { get; init; } = Dns.GetHostAddressesAsync;

    public EgressAllowList AllowList => allowList;

    /// <summary>Checks a URL before use: its shape and scheme, then every address its host resolves to.</summary>
    public async Task<Result<IPAddress[]>> CheckAsync(Uri url, CancellationToken ct)
    {
        if (!url.IsAbsoluteUri || (url.Scheme != Uri.UriSchemeHttp && url.Scheme != Uri.UriSchemeHttps))
        {
            return Error.SsrfBlocked("Only http and https URLs are allowed.");
        }
        if (EgressUrl.Problem(url) is { } problem) return Error.SsrfBlocked(problem);
        if (url.Scheme == Uri.UriSchemeHttp && !allowList.AllowsPlaintext(url.IdnHost))
        {
            return Error.SsrfBlocked($"Plain http is allowed only for hosts on {EgressAllowList.Section}; use https for '{url.Host}'.");
        }
        return await CheckHostAsync(url.IdnHost, ct);
    }

    /// <summary>Resolves a host name and checks every address; the answer lists the addresses that may be connected to.</summary>
    public async Task<Result<IPAddress[]>> CheckHostAsync(string host, CancellationToken ct)
    {
        host = host.Trim('[', ']');
        IPAddress[] addresses;
        if (IPAddress.TryParse(host, out var literal)) addresses = [literal];
        else
        {
            try
            {
                addresses = await Resolve(host, ct);
            }
            catch (SocketException)
            {
                return DoesNotResolve(host);
            }
        }
        if (addresses.Length == 0) return DoesNotResolve(host);
        if (allowList.AllowsHost(host)) return addresses;

        foreach (var address in addresses)
        {
            if (allowList.AllowsAddress(address)) continue;
            var judgement = SpecialPurposeAddresses.Judge(address);
            if (!judgement.IsPublic)
            {
                return Error.SsrfBlocked(
                    $"The host '{host}' resolves to {address}, {judgement}; outbound connections go to public addresses only, or to those {EgressAllowList.Section} opens.");
            }
        }
        return addresses;
    }

    /// <summary>
    /// An HTTP handler for outbound calls: each new connection re-resolves and re-checks its host and connects to the
    /// checked address; redirects are not followed. The caller owns (and should reuse) the handler.
    /// </summary>
    /// <remarks>
    /// With <paramref name="certificate"/> every connection presents it (mutual TLS): connections are pooled per host,
    /// not per certificate, so a handler holds one identity and is never shared with another.
    /// </remarks>
    public SocketsHttpHandler CreateHandler(TimeSpan? connectTimeout = null, ClientCertificate? certificate = null) => new()
    {
        SslOptions = certificate?.TlsOptions() ?? new(),
        AllowAutoRedirect = false,
        UseProxy = false,
        UseCookies = false,
        ConnectTimeout = connectTimeout ?? TimeSpan.FromSeconds(10),
        PooledConnectionLifetime = TimeSpan.FromMinutes(5),
        ConnectCallback = ConnectAsync,
    };

    private async ValueTask<Stream> ConnectAsync(SocketsHttpConnectionContext context, CancellationToken ct)
    {
        var checkedAddresses = await CheckHostAsync(context.DnsEndPoint.Host, ct);
        if (checkedAddresses.Error is { Code: "upstream_unreachable" }) throw new SocketException((int)SocketError.HostNotFound);
        if (!checkedAddresses.IsSuccess) throw new SsrfBlockedException(checkedAddresses.Error!.Detail!);

        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(checkedAddresses.Value, context.DnsEndPoint.Port, ct);
            return new NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>A name that does not resolve is an upstream that cannot be reached (502), not an address we refuse.</summary>
    private static Error DoesNotResolve(string host) => Error.UpstreamUnreachable($"The host '{host}' does not resolve.");

    public static bool IsBlocked(Exception exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            if (e is SsrfBlockedException) return true;
        }
        return false;
    }

    /// <summary>True for addresses on the public internet; false for every special-purpose range (the allow-list aside).</summary>
    public static bool IsPublic(IPAddress address) => SpecialPurposeAddresses.Judge(address).IsPublic;
}
