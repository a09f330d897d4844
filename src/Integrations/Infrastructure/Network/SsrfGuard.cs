using System.Net;
using System.Net.Sockets;
using Integrations.Common;

namespace Integrations.Infrastructure.Network;

/// <summary>Raised inside a connect attempt the guard refused; <see cref="SsrfGuard.IsBlocked"/> finds it in an exception chain.</summary>
public sealed class SsrfBlockedException(string message) : Exception(message);

/// <summary>
/// Every outbound connection (MCP servers, provider base URLs, datasource hosts) goes through here:
/// http/https only; the host is resolved and every address checked (loopback, private, link-local, CGNAT,
/// multicast, metadata, reserved and IPv4-in-IPv6 forms are refused); the connection goes to the address that
/// was checked, so a DNS answer that changes between check and connect cannot slip through. Hosts listed in
/// <see cref="TrustedHosts"/> are exempt (development and tests).
/// </summary>
public sealed class SsrfGuard(TrustedHosts trustedHosts)
{
    /// <summary>Overridable resolver, so tests can play a DNS answer that changes.</summary>
    public Func<string, CancellationToken, Task<IPAddress[]>> Resolve { get; init; } = Dns.GetHostAddressesAsync;

    /// <summary>Checks a URL before use: its scheme, then every address its host resolves to.</summary>
    public async Task<Result<IPAddress[]>> CheckAsync(Uri url, CancellationToken ct)
    {
        if (!url.IsAbsoluteUri || (url.Scheme != Uri.UriSchemeHttp && url.Scheme != Uri.UriSchemeHttps))
        {
            return Error.SsrfBlocked("Only http and https URLs are allowed.");
        }
        if (url.Scheme == Uri.UriSchemeHttp && !trustedHosts.Contains(url.IdnHost))
        {
            return Error.SsrfBlocked($"Plain http is allowed only for trusted development hosts; use https for '{url.Host}'.");
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
                return Error.SsrfBlocked($"The host '{host}' does not resolve.");
            }
        }
        if (addresses.Length == 0) return Error.SsrfBlocked($"The host '{host}' does not resolve.");
        if (trustedHosts.Contains(host)) return addresses;

        var refused = addresses.FirstOrDefault(a => !IsPublic(a));
        return refused is null
            ? addresses
            : Error.SsrfBlocked($"The host '{host}' resolves to {refused}, a {Describe(refused)} address; outbound connections go to public addresses only.");
    }

    /// <summary>
    /// An HTTP handler for outbound calls: each new connection re-resolves and re-checks its host and connects to the
    /// checked address; redirects are not followed. The caller owns (and should reuse) the handler.
    /// </summary>
    public SocketsHttpHandler CreateHandler(TimeSpan? connectTimeout = null) => new()
    {
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

    public static bool IsBlocked(Exception exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            if (e is SsrfBlockedException) return true;
        }
        return false;
    }

    /// <summary>True for addresses on the public internet; false for every special-purpose range.</summary>
    public static bool IsPublic(IPAddress address) => Describe(address) == "public";

    private static string Describe(IPAddress address)
    {
        if (address.IsIPv4MappedToIPv6) return Describe(address.MapToIPv4());
        if (address.AddressFamily == AddressFamily.InterNetwork)
        {
            var b = address.GetAddressBytes();
            return b switch
            {
                [0, ..] => "unspecified",
                [10, ..] => "private",
                [127, ..] => "loopback",
                [169, 254, ..] => "link-local or metadata",
                [172, >= 16 and <= 31, ..] => "private",
                [192, 168, ..] => "private",
                [100, >= 64 and <= 127, ..] => "carrier-grade NAT",
                [192, 0, 0, _] => "IETF protocol assignment",
                [192, 0, 2, _] or [198, 51, 100, _] or [203, 0, 113, _] => "documentation",
                [198, 18 or 19, ..] => "benchmarking",
                [>= 224 and <= 239, ..] => "multicast",
                [>= 240, ..] => "reserved or broadcast",
                _ => "public",
            };
        }
        if (address.AddressFamily == AddressFamily.InterNetworkV6)
        {
            if (address.Equals(IPAddress.IPv6Loopback)) return "loopback";
            if (address.Equals(IPAddress.IPv6None)) return "unspecified";
            var b = address.GetAddressBytes();
            // IPv4 embedded in IPv6 (compatible ::a.b.c.d, NAT64 64:ff9b::/96, 6to4 2002::/16) is judged by its IPv4 part.
            if (b.AsSpan(0, 12).IndexOfAnyExcept((byte)0) < 0) return Describe(new IPAddress(b[12..]));
            if (b is [0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0, ..]) return Describe(new IPAddress(b[12..]));
            if (b is [0x20, 0x02, ..]) return Describe(new IPAddress(b[2..6]));
            if ((b[0] & 0xfe) == 0xfc) return "unique-local (private)";
            if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return "link-local";
            if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) return "site-local";
            if (b[0] == 0xff) return "multicast";
            if (b is [0x20, 0x01, 0x0d, 0xb8, ..]) return "documentation";
            return "public";
        }
        return "unsupported";
    }
}
