using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Integrations.Common;
using Integrations.Infrastructure.Network;
using Integrations.Infrastructure.Vault;
using ModelContextProtocol;
using Polly.CircuitBreaker;
using Polly.Timeout;

namespace Integrations.Infrastructure.Mcp;

/// <summary>The server answered, but not acceptably (too many tools, duplicate names, a cursor loop, ...).</summary>
public sealed class McpUpstreamException(string message) : Exception(message);

/// <summary>
/// Turns what the SDK and the network throw into the stable error codes callers see, and decides which
/// failures are worth a retry and which count against a server's circuit. Texts are ours: upstream bodies and
/// exception messages are not passed through, except a JSON-RPC error's own message, shortened.
/// </summary>
internal static class McpFailures
{
    /// <remarks><paramref name="mutualTls"/>: the connection presented a client certificate, whose refusal is told apart.</remarks>
    public static Error ToError(Exception exception, Uri url, TimeSpan timeout, bool mutualTls = false)
    {
        var server = $"The MCP server at {url.Authority}";
        if (SsrfGuard.IsBlocked(exception))
        {
            return Error.SsrfBlocked(Find<SsrfBlockedException>(exception)!.Message);
        }
        return exception switch
        {
            BrokenCircuitException broken => Error.UpstreamUnreachable(
                $"{server} failed repeatedly; calls to it are paused{RetryAfter(broken)}."),
            TimeoutRejectedException or TimeoutException => Error.UpstreamTimeout(
                $"{server} did not answer within {timeout.TotalSeconds:0.###} s."),
            McpResponseTooLargeException tooLarge => Error.UpstreamError(
                $"{server} sent a response (or SSE event) larger than the {tooLarge.Limit} byte limit."),
            McpUpstreamException upstream => Error.UpstreamError($"{server}: {upstream.Message}"),
            HttpRequestException { StatusCode: HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden } refused => Error.UpstreamError(
                $"{server} refused the request (HTTP {(int)refused.StatusCode!}): its credential is missing or was not accepted.") with
            {
                Extensions = new Dictionary<string, object?> { [Error.UpstreamStatus] = (int)refused.StatusCode! },
            },
            HttpRequestException { StatusCode: { } status } => Error.UpstreamError(
                $"{server} answered HTTP {(int)status} {status}; it does not serve MCP (Streamable HTTP) there or is failing."),
            _ when mutualTls && ClientCertificate.RefusalDetail(exception) is { } refusal => Error.UpstreamUnreachable($"{server} could not be reached: {refusal}."),
            HttpRequestException { HttpRequestError: HttpRequestError.ConnectionError or HttpRequestError.NameResolutionError } connect =>
                Error.UpstreamUnreachable($"{server} could not be reached: {SocketReason(connect)}."),
            HttpRequestException or IOException => Error.UpstreamError(
                $"{server} closed the connection before it finished answering."),
            McpProtocolException protocol => Error.UpstreamError(
                $"{server} answered with a JSON-RPC error {(int)protocol.ErrorCode}: {Shorten(protocol.Message)}"),
            McpException mcp when mcp.Message.Contains("without a reply", StringComparison.OrdinalIgnoreCase) => Error.UpstreamError(
                $"{server} ended its response without an MCP reply: it closed the stream mid-response or does not speak MCP (Streamable HTTP)."),
            McpException mcp => Error.UpstreamError($"{server} did not complete the MCP exchange: {Shorten(mcp.Message)}"),
            JsonException => Error.UpstreamError($"{server} answered with something that is not JSON-RPC."),
            OperationCanceledException => Error.UpstreamError($"{server} ended the MCP session unexpectedly."),
            _ => Error.UpstreamError($"{server} could not be used ({exception.GetType().Name})."),
        };
    }

    /// <summary>Failures that may pass on their own and where the request surely did no harm: worth another try if idempotent.</summary>
    public static bool IsTransient(Exception exception) => exception switch
    {
        _ when SsrfGuard.IsBlocked(exception) => false,
        HttpRequestException { StatusCode: HttpStatusCode.BadGateway or HttpStatusCode.ServiceUnavailable or HttpStatusCode.GatewayTimeout } => true,
        HttpRequestException { StatusCode: null, HttpRequestError: HttpRequestError.ConnectionError } => true,
        _ => false,
    };

    /// <summary>
    /// A Streamable HTTP attempt refused with a 4xx that is not about credentials or rate: how a server that only
    /// speaks the legacy HTTP+SSE transport answers a POST to its endpoint (404, 405, 400).
    /// </summary>
    public static bool SuggestsLegacySse(Exception exception) =>
        exception is HttpRequestException { StatusCode: { } status }
        && (int)status is >= 400 and < 500
        && status is not (HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden or HttpStatusCode.ProxyAuthenticationRequired
            or HttpStatusCode.RequestTimeout or HttpStatusCode.TooManyRequests);

    /// <summary>Failures that say the server is down or broken (not that it refused us): they count towards opening its circuit.</summary>
    public static bool CountsAgainstServer(Exception exception) => exception switch
    {
        _ when SsrfGuard.IsBlocked(exception) => false,
        TimeoutRejectedException or TimeoutException => true,
        HttpRequestException { StatusCode: { } status } => (int)status >= 500,
        HttpRequestException or IOException => true,
        McpProtocolException => false,
        McpException => true,
        _ => false,
    };

    private static string RetryAfter(BrokenCircuitException broken) =>
        broken.RetryAfter is { } after ? $" for another {Math.Max(1, (int)Math.Ceiling(after.TotalSeconds))} s" : string.Empty;

    private static string SocketReason(HttpRequestException exception) =>
        Find<SocketException>(exception)?.SocketErrorCode switch
        {
            SocketError.ConnectionRefused => "connection refused",
            SocketError.HostNotFound or SocketError.NoData => "the host name does not resolve",
            SocketError.TimedOut => "the connection attempt timed out",
            SocketError.HostUnreachable or SocketError.NetworkUnreachable => "no route to the host",
            _ => exception.HttpRequestError == HttpRequestError.NameResolutionError ? "the host name does not resolve" : "the connection failed",
        };

    private static T? Find<T>(Exception exception) where T : Exception
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            if (e is T found) return found;
        }
        return null;
    }

    private static string Shorten(string message)
    {
        message = message.ReplaceLineEndings(" ");
        return message.Length <= 300 ? message : message[..300] + "...";
    }
}
