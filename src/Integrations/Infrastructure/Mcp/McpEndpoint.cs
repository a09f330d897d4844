using System.Security.Cryptography;
using System.Text;
using ModelContextProtocol.Protocol;

namespace Integrations.Infrastructure.Mcp;

/// <summary>
/// The secret a server is called with, already resolved by the handler from the server's credential reference.
/// A class, not a record, so the secret is never printed by a generated ToString.
/// </summary>
public sealed class McpServerAuth
{
    public const string DefaultHeader = "Authorization";

    public McpServerAuth(string headerName, string secret)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(headerName);
        ArgumentException.ThrowIfNullOrEmpty(secret);
        HeaderName = headerName;
        Secret = secret;
    }

    public string HeaderName { get; }

    public string Secret { get; }

    /// <summary><c>Authorization</c> carries <c>Bearer &lt;secret&gt;</c>; any other header the raw secret.</summary>
    public string HeaderValue =>
        string.Equals(HeaderName, DefaultHeader, StringComparison.OrdinalIgnoreCase) ? "Bearer " + Secret : Secret;

    public override string ToString() => $"{HeaderName}: (redacted)";
}

/// <summary>A registered server as the session pool sees it: one pooled session per (tenant, server).</summary>
public sealed record McpEndpoint(string TenantId, Guid ServerId, Uri Url, McpServerAuth? Auth)
{
    /// <summary>Changes when the URL, header or secret changes, so a rotated credential gets a new session.</summary>
    internal string Fingerprint()
    {
        var material = $"{Url.AbsoluteUri}\n{Auth?.HeaderName}\n{Auth?.Secret}";
        return Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(material)));
    }
}

/// <summary>What a server said about itself and every tool it lists (all pages).</summary>
public sealed record McpServerDescription(
    string ProtocolVersion,
    string? ServerName,
    string? ServerVersion,
    string CapabilitiesJson,
    IReadOnlyList<Tool> Tools);

/// <summary>The outcome of a health probe: status <c>active</c>, <c>degraded</c> or <c>unreachable</c>.</summary>
public sealed record McpProbe(string Status, int? LatencyMs, string Method, string? Detail, string? ErrorCode = null)
{
    public const string Active = "active";
    public const string Degraded = "degraded";
    public const string Unreachable = "unreachable";
}
