using System.Security.Cryptography;
using System.Text;
using Integrations.Infrastructure.Vault;
using ModelContextProtocol.Protocol;

namespace Integrations.Infrastructure.Mcp;

/// <summary>
/// How a server is called: a header, or a client certificate for mutual TLS, built by the handler from the secret it
/// resolved through the vault (never from the caller's own credentials). A class, not a record, so no generated
/// ToString prints it.
/// </summary>
public sealed class McpServerAuth
{
    public const string DefaultHeader = "Authorization";

    private McpServerAuth(string? headerName, string? headerValue, ClientCertificate? certificate = null)
    {
        HeaderName = headerName;
        HeaderValue = headerValue;
        Certificate = certificate;
    }

    public string? HeaderName { get; }

    public string? HeaderValue { get; }

    /// <summary>The identity presented in the TLS handshake (client_certificate credentials); no header then.</summary>
    public ClientCertificate? Certificate { get; }

    public static McpServerAuth MutualTls(ClientCertificate certificate) => new(null, null, certificate);

    /// <summary><c>Authorization</c> carries <c>Bearer &lt;token&gt;</c>; any other header the raw token.</summary>
    public static McpServerAuth Token(string headerName, string token)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(headerName);
        ArgumentException.ThrowIfNullOrEmpty(token);
        return new(headerName, string.Equals(headerName, DefaultHeader, StringComparison.OrdinalIgnoreCase) ? "Bearer " + token : token);
    }

    public static McpServerAuth Basic(string username, string password) =>
        new(DefaultHeader, "Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes($"{username}:{password}")));

    public override string ToString() => Certificate is null ? $"{HeaderName}: (redacted)" : "client certificate (redacted)";
}

/// <summary>How a server is spoken to: Streamable HTTP, or the legacy HTTP+SSE transport (GET stream, POSTed messages).</summary>
public static class McpTransports
{
    public const string StreamableHttp = "streamable_http";
    public const string Sse = "sse";
}

/// <summary>A registered server as the session pool sees it: one pooled session per (tenant, server).</summary>
public sealed record McpEndpoint(string TenantId, Guid ServerId, Uri Url, McpServerAuth? Auth, string Transport = McpTransports.StreamableHttp)
{
    /// <summary>Changes when the URL, transport, header or secret changes, so a rotated credential gets a new session.</summary>
    internal string Fingerprint()
    {
        var material = $"{Url.AbsoluteUri}\n{Transport}\n{Auth?.HeaderName}\n{Auth?.HeaderValue}\n{Auth?.Certificate?.Fingerprint}";
        return Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(material)));
    }
}

/// <summary>What a server said about itself and every tool it lists (all pages), and the transport that worked.</summary>
public sealed record McpServerDescription(
    string Transport,
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
