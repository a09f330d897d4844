using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace Integrations.Features.Connectors.Adapters;

/// <summary>
/// How a webhook delivery is signed, and how a receiver checks it: <c>X-Integrations-Timestamp</c> is the Unix time in
/// seconds when the attempt was sent; <c>X-Integrations-Signature</c> is <c>v1=</c> and the lower-case hex HMAC-SHA256,
/// keyed with the connection's secret, of the timestamp, a dot and the raw body. A receiver recomputes it over the bytes
/// it received, compares in constant time, and refuses a timestamp older (or newer) than its replay window.
/// </summary>
public static class WebhookSignature
{
    public const string TimestampHeader = "X-Integrations-Timestamp";
    public const string SignatureHeader = "X-Integrations-Signature";
    public const string DeliveryHeader = "X-Integrations-Delivery";
    public const string EventHeader = "X-Integrations-Event";

    /// <summary>The replay window this service documents for receivers.</summary>
    public static readonly TimeSpan ReplayWindow = TimeSpan.FromMinutes(5);

    public static string Sign(string secret, long timestamp, ReadOnlySpan<byte> body)
    {
        var prefix = Encoding.UTF8.GetBytes(timestamp.ToString(CultureInfo.InvariantCulture) + ".");
        var message = new byte[prefix.Length + body.Length];
        prefix.CopyTo(message, 0);
        body.CopyTo(message.AsSpan(prefix.Length));
        return "v1=" + Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), message));
    }

    /// <summary>What a receiver does: the signature matches the body and the timestamp is inside the replay window.</summary>
    public static bool Verify(string secret, string? timestamp, string? signature, ReadOnlySpan<byte> body, DateTimeOffset now, TimeSpan? window = null)
    {
        if (!long.TryParse(timestamp, NumberStyles.None, CultureInfo.InvariantCulture, out var seconds) || signature is null) return false;
        if ((now - DateTimeOffset.FromUnixTimeSeconds(seconds)).Duration() > (window ?? ReplayWindow)) return false;
        var expected = Encoding.ASCII.GetBytes(Sign(secret, seconds, body));
        return CryptographicOperations.FixedTimeEquals(expected, Encoding.ASCII.GetBytes(signature));
    }
}
