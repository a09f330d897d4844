using Microsoft.Extensions.Configuration;

namespace Integrations.Infrastructure.Network;

/// <summary>
/// Hosts the configuration (<c>Integrations:Network:TrustedHosts</c>) opens for development and tests:
/// they may be reached over plain http and may resolve to loopback or private addresses. Empty by default.
/// </summary>
public sealed class TrustedHosts
{
    private readonly HashSet<string> _hosts;

    public TrustedHosts(IEnumerable<string> hosts) =>
        _hosts = new HashSet<string>(hosts.Where(h => !string.IsNullOrWhiteSpace(h)).Select(h => h.Trim()), StringComparer.OrdinalIgnoreCase);

    public static TrustedHosts FromConfiguration(IConfiguration configuration) =>
        new(configuration.GetSection("Integrations:Network:TrustedHosts").Get<string[]>() ?? []);

    public bool Contains(string host) => _hosts.Contains(host.Trim('[', ']'));

    public IReadOnlyCollection<string> All => _hosts;
}
