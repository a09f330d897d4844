using System.Collections.Concurrent;
using Integrations.Features.Connectors.Adapters;
using Integrations.Tests.Support;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Integrations.Tests.Connectors;

/// <summary>
/// A webhook receiver on loopback that checks each delivery as a real receiver would (signature over timestamp + body,
/// replay window) and answers what the test scripts: the next statuses in <see cref="Script"/>, then 200.
/// </summary>
public sealed class WebhookReceiver : IAsyncDisposable
{
    public sealed record Received(string Event, string? Timestamp, string? Signature, byte[] Body, bool Verified, int Answered);

    private WebApplication _app = null!;

    public required string Secret { get; init; }

    public string Url { get; private set; } = null!;

    public ConcurrentQueue<int> Script { get; } = new();

    public ConcurrentQueue<Received> Deliveries { get; } = new();

    public static async Task<WebhookReceiver> StartAsync(string secret)
    {
        var receiver = new WebhookReceiver { Secret = secret };
        (receiver._app, var address) = await LoopbackServer.StartAsync(app => app.MapPost("/hook", receiver.HandleAsync));
        receiver.Url = address + "/hook";
        return receiver;
    }

    private async Task HandleAsync(HttpContext http)
    {
        using var buffer = new MemoryStream();
        await http.Request.Body.CopyToAsync(buffer);
        var body = buffer.ToArray();
        var timestamp = http.Request.Headers[WebhookSignature.TimestampHeader].ToString();
        var signature = http.Request.Headers[WebhookSignature.SignatureHeader].ToString();
        var verified = WebhookSignature.Verify(Secret, timestamp, signature, body, DateTimeOffset.UtcNow);
        var status = !verified ? 401 : Script.TryDequeue(out var scripted) ? scripted : 200;
        Deliveries.Enqueue(new Received(http.Request.Headers[WebhookSignature.EventHeader].ToString(), timestamp, signature, body, verified, status));
        http.Response.StatusCode = status;
    }

    public async ValueTask DisposeAsync() => await _app.DisposeAsync();
}
