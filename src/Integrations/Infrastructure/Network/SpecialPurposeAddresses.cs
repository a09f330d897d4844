using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace Integrations.Infrastructure.Network;

/// <summary>How an IPv6 range carries an IPv4 address, so the guard can judge the IPv4 address too.</summary>
public enum EmbeddedIPv4
{
    None,

    /// <summary>The last 32 bits (IPv4-mapped, IPv4-compatible, IPv4-translated, NAT64 /96 prefixes).</summary>
    Last32Bits,

    /// <summary>6to4: bits 16-47.</summary>
    SixToFour,

    /// <summary>Teredo: the server in bits 32-63, the client in the last 32 bits, inverted.</summary>
    Teredo,
}

/// <summary>
/// One range outbound connections may not reach. <see cref="JudgedByEmbedded"/> ranges are translations of IPv4
/// that reach the public internet when the IPv4 address they carry is public (IPv4-mapped, the NAT64 well-known
/// prefix, 6to4): they are refused exactly when that IPv4 address is.
/// </summary>
public sealed record SpecialPurposeRange(string Cidr, string Name, string Rfc, EmbeddedIPv4 Embeds = EmbeddedIPv4.None, bool JudgedByEmbedded = false)
{
    public IPNetwork Network { get; } = IPNetwork.Parse(Cidr);
}

/// <summary>What the guard found an address to be: null <see cref="Range"/> means public.</summary>
public sealed record AddressJudgement(IPAddress Address, SpecialPurposeRange? Range, IReadOnlyList<AddressJudgement> Embedded)
{
    public bool IsPublic => Range is null && Embedded.All(e => e.IsPublic);

    public override string ToString()
    {
        var what = Range is null ? "a public address" : $"in {Range.Name} {Range.Cidr} ({Range.Rfc})";
        return Embedded.Count == 0 ? what : $"{what}, carrying {string.Join(" and ", Embedded.Select(e => $"{e.Address} ({e})"))}";
    }
}

/// <summary>
/// The blocked ranges, in one table: every entry of the IANA IPv4 and IPv6 Special-Purpose Address Registries
/// (none of them is where a tenant's API lives, including the few the registry marks globally reachable, such as
/// AS112 and AMT relays), plus multicast and the deprecated IPv6 forms the registries no longer list. An address
/// is judged by the most specific range that holds it; an IPv6 range that carries an IPv4 address has that
/// address judged as well.
/// </summary>
public static class SpecialPurposeAddresses
{
    public static readonly IReadOnlyList<SpecialPurposeRange> Ranges =
    [
        // IANA IPv4 Special-Purpose Address Registry
        new("0.0.0.0/8", "\"this network\"", "RFC 791"),
        new("0.0.0.0/32", "\"this host on this network\"", "RFC 1122"),
        new("10.0.0.0/8", "private-use", "RFC 1918"),
        new("100.64.0.0/10", "shared address space (carrier-grade NAT)", "RFC 6598"),
        new("127.0.0.0/8", "loopback", "RFC 1122"),
        new("169.254.0.0/16", "link-local (cloud metadata)", "RFC 3927"),
        new("172.16.0.0/12", "private-use", "RFC 1918"),
        new("192.0.0.0/24", "IETF protocol assignments", "RFC 6890"),
        new("192.0.0.0/29", "IPv4 service continuity prefix", "RFC 7335"),
        new("192.0.0.8/32", "IPv4 dummy address", "RFC 7600"),
        new("192.0.0.9/32", "Port Control Protocol anycast", "RFC 7723"),
        new("192.0.0.10/32", "TURN anycast", "RFC 8155"),
        new("192.0.0.170/31", "NAT64/DNS64 discovery", "RFC 8880"),
        new("192.0.2.0/24", "documentation (TEST-NET-1)", "RFC 5737"),
        new("192.31.196.0/24", "AS112-v4", "RFC 7535"),
        new("192.52.193.0/24", "AMT", "RFC 7450"),
        new("192.88.99.0/24", "deprecated 6to4 relay anycast", "RFC 7526"),
        new("192.168.0.0/16", "private-use", "RFC 1918"),
        new("192.175.48.0/24", "direct delegation AS112 service", "RFC 7534"),
        new("198.18.0.0/15", "benchmarking", "RFC 2544"),
        new("198.51.100.0/24", "documentation (TEST-NET-2)", "RFC 5737"),
        new("203.0.113.0/24", "documentation (TEST-NET-3)", "RFC 5737"),
        new("240.0.0.0/4", "reserved", "RFC 1112"),
        new("255.255.255.255/32", "limited broadcast", "RFC 919"),
        // IANA IPv4 Multicast Address Space Registry
        new("224.0.0.0/4", "multicast", "RFC 5771"),

        // IANA IPv6 Special-Purpose Address Registry
        new("::1/128", "loopback", "RFC 4291"),
        new("::/128", "unspecified", "RFC 4291"),
        new("::ffff:0:0/96", "IPv4-mapped", "RFC 4291", EmbeddedIPv4.Last32Bits, JudgedByEmbedded: true),
        new("64:ff9b::/96", "IPv4/IPv6 translation (NAT64)", "RFC 6052", EmbeddedIPv4.Last32Bits, JudgedByEmbedded: true),
        new("64:ff9b:1::/48", "local-use IPv4/IPv6 translation", "RFC 8215", EmbeddedIPv4.Last32Bits),
        new("100::/64", "discard-only", "RFC 6666"),
        new("100:0:0:1::/64", "dummy IPv6 prefix", "RFC 9780"),
        new("2001::/23", "IETF protocol assignments", "RFC 2928"),
        new("2001::/32", "Teredo", "RFC 4380", EmbeddedIPv4.Teredo),
        new("2001:1::1/128", "Port Control Protocol anycast", "RFC 7723"),
        new("2001:1::2/128", "TURN anycast", "RFC 8155"),
        new("2001:1::3/128", "DNS-SD service registration protocol anycast", "RFC 9665"),
        new("2001:2::/48", "benchmarking", "RFC 5180"),
        new("2001:3::/32", "AMT", "RFC 7450"),
        new("2001:4:112::/48", "AS112-v6", "RFC 7535"),
        new("2001:10::/28", "deprecated ORCHID", "RFC 4843"),
        new("2001:20::/28", "ORCHIDv2", "RFC 7343"),
        new("2001:30::/28", "drone remote ID", "RFC 9374"),
        new("2001:db8::/32", "documentation", "RFC 3849"),
        new("2002::/16", "6to4", "RFC 3056", EmbeddedIPv4.SixToFour, JudgedByEmbedded: true),
        new("2620:4f:8000::/48", "direct delegation AS112 service", "RFC 7534"),
        new("3fff::/20", "documentation", "RFC 9637"),
        new("5f00::/16", "segment routing (SRv6) SIDs", "RFC 9602"),
        new("fc00::/7", "unique-local", "RFC 4193"),
        new("fe80::/10", "link-local", "RFC 4291"),
        // Deprecated forms the registry no longer lists, and multicast (IANA IPv6 Multicast Address Space Registry)
        new("::/96", "deprecated IPv4-compatible", "RFC 4291 2.5.5.1", EmbeddedIPv4.Last32Bits),
        new("::ffff:0:0:0/96", "IPv4-translated", "RFC 2765", EmbeddedIPv4.Last32Bits),
        new("fec0::/10", "deprecated site-local", "RFC 3879"),
        new("ff00::/8", "multicast", "RFC 4291"),
    ];

    /// <summary>The most specific range holding <paramref name="address"/> (null: none), and the IPv4 addresses it carries, judged.</summary>
    public static AddressJudgement Judge(IPAddress address)
    {
        SpecialPurposeRange? match = null;
        foreach (var candidate in Ranges)
        {
            if (Holds(candidate.Network, address) && (match is null || candidate.Network.PrefixLength > match.Network.PrefixLength))
            {
                match = candidate;
            }
        }
        if (match is null || match.Embeds == EmbeddedIPv4.None) return new AddressJudgement(address, match, []);

        var embedded = Embedded(address, match.Embeds).Select(Judge).ToList();
        // A translation to a public IPv4 address is as public as that address; any other carrier range is refused anyway.
        var refusedBy = match.JudgedByEmbedded && embedded.All(e => e.IsPublic) ? null : match;
        return new AddressJudgement(address, refusedBy, embedded);
    }

    /// <summary>
    /// Prefix match on the bytes as written. (IPNetwork.Contains converts an IPv4-mapped address to IPv4 first, so
    /// ::ffff:0:0/96 would never hold anything and mapped addresses would be judged as if they had no IPv6 form.)
    /// </summary>
    public static bool Holds(IPNetwork network, IPAddress address)
    {
        if (network.BaseAddress.AddressFamily != address.AddressFamily) return false;
        Span<byte> a = stackalloc byte[16];
        Span<byte> n = stackalloc byte[16];
        address.TryWriteBytes(a, out var length);
        network.BaseAddress.TryWriteBytes(n, out _);
        var bits = network.PrefixLength;
        var whole = bits / 8;
        if (!a[..whole].SequenceEqual(n[..whole])) return false;
        if (bits % 8 == 0 || whole >= length) return true;
        var mask = (byte)(0xff << (8 - bits % 8));
        return (a[whole] & mask) == (n[whole] & mask);
    }

    private static IEnumerable<IPAddress> Embedded(IPAddress address, EmbeddedIPv4 form)
    {
        if (address.AddressFamily != AddressFamily.InterNetworkV6) yield break;
        var bytes = address.GetAddressBytes();
        switch (form)
        {
            case EmbeddedIPv4.Last32Bits:
                yield return new IPAddress(bytes.AsSpan(12, 4));
                break;
            case EmbeddedIPv4.SixToFour:
                yield return new IPAddress(bytes.AsSpan(2, 4));
                break;
            case EmbeddedIPv4.Teredo:
                yield return new IPAddress(bytes.AsSpan(4, 4));
                var client = ~BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(12, 4));
                var clientBytes = new byte[4];
                BinaryPrimitives.WriteUInt32BigEndian(clientBytes, client);
                yield return new IPAddress(clientBytes);
                break;
        }
    }
}
