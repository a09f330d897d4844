using System.Net;
using Microsoft.Extensions.Configuration;

namespace Integrations.Infrastructure.Network;

/// <summary>
/// The destinations the operator opens past the special-purpose ranges (<c>Integrations:Network:EgressAllow:0..n</c>),
/// in production too, e.g. the private network of a docker-compose deployment. An entry is a host name or address
/// literal — that host may be reached whatever it resolves to, and over plain http (or a datasource without TLS) —
/// or a CIDR — addresses inside it may be reached whatever name leads there, over https (plain http only for an
/// address literal inside it). Empty by default; Development settings list localhost.
/// <c>Integrations:Network:TrustedHosts</c>, the earlier name of the same list, is read as more entries.
/// </summary>
public sealed class EgressAllowList
{
    public const string Section = "Integrations:Network:EgressAllow";
    public const string LegacySection = "Integrations:Network:TrustedHosts";

    private readonly HashSet<string> _hosts = new(StringComparer.OrdinalIgnoreCase);
    private readonly List<IPNetwork> _networks = [];

    public EgressAllowList(IEnumerable<string?> entries)
    {
        foreach (var raw in entries)
        {
            var entry = raw?.Trim();
            if (string.IsNullOrEmpty(entry)) continue;
            if (entry.Contains('/'))
            {
                // TryParse accepts host bits after the prefix (10.20.0.1/16); such an entry is more likely a typo than a block.
                if (!IPNetwork.TryParse(entry, out var network) || !IPAddress.TryParse(entry[..entry.IndexOf('/')], out var written)
                    || !written.Equals(network.BaseAddress))
                {
                    throw new InvalidOperationException(
                        $"{Section} entry '{entry}' is not a CIDR block (e.g. 172.18.0.0/16 or fd00:1::/64, with no bits set after the prefix).");
                }
                _networks.Add(network);
            }
            else
            {
                _hosts.Add(entry.Trim('[', ']').TrimEnd('.'));
            }
        }
    }

    public static EgressAllowList FromConfiguration(IConfiguration configuration) =>
        new((configuration.GetSection(Section).Get<string[]>() ?? []).Concat(configuration.GetSection(LegacySection).Get<string[]>() ?? []));

    /// <summary>The host is listed by name (or as the very address literal): it may be reached whatever it resolves to.</summary>
    public bool AllowsHost(string host) => _hosts.Contains(Normalize(host));

    /// <summary>The address lies in a listed CIDR block (an IPv4-mapped address is compared as its IPv4 address).</summary>
    public bool AllowsAddress(IPAddress address)
    {
        if (address.IsIPv4MappedToIPv6) address = address.MapToIPv4();
        foreach (var network in _networks)
        {
            if (network.Contains(address)) return true;
        }
        return false;
    }

    /// <summary>Plain http, or a datasource connection without TLS: a host listed by name, or an address literal inside a listed block.</summary>
    public bool AllowsPlaintext(string host)
    {
        var normalized = Normalize(host);
        return _hosts.Contains(normalized) || (IPAddress.TryParse(normalized, out var literal) && AllowsAddress(literal));
    }

    public bool IsEmpty => _hosts.Count == 0 && _networks.Count == 0;

    private static string Normalize(string host) => host.Trim().Trim('[', ']').TrimEnd('.');
}
