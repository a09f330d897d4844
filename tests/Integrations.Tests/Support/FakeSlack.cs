using System.Collections.Concurrent;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Integrations.Tests.Support;

/// <summary>
/// The subset of Slack's Web API the connector uses (<c>auth.test</c>, <c>chat.postMessage</c>), answering as Slack
/// does: HTTP 200 with <c>ok</c>, and <c>ok: false</c> with an error code for a bad token or an unknown channel.
/// </summary>
public sealed class FakeSlack : IAsyncDisposable
{
    public sealed record Message(string Channel, string Text, string? ThreadTs, string Ts);

    private WebApplication _app = null!;
    private long _next = 1_700_000_000;

    public required string Token { get; init; }

    public string BaseUrl { get; private set; } = null!;

    public HashSet<string> Channels { get; } = ["C-ops", "C-general"];

    public ConcurrentQueue<Message> Messages { get; } = new();

    public static async Task<FakeSlack> StartAsync(string token)
    {
        var slack = new FakeSlack { Token = token };
        (slack._app, var address) = await LoopbackServer.StartAsync(app =>
        {
            app.MapPost("/api/auth.test", (HttpContext http) => slack.Authorized(http)
                ? Results.Json(new { ok = true, team = "Acme", user = "integrations-bot" })
                : Results.Json(new { ok = false, error = "invalid_auth" }));
            app.MapPost("/api/chat.postMessage", async (HttpContext http) =>
            {
                if (!slack.Authorized(http)) return Results.Json(new { ok = false, error = "invalid_auth" });
                var body = await JsonDocument.ParseAsync(http.Request.Body);
                var channel = body.RootElement.GetProperty("channel").GetString()!;
                if (!slack.Channels.Contains(channel)) return Results.Json(new { ok = false, error = "channel_not_found" });
                var ts = $"{Interlocked.Increment(ref slack._next)}.000100";
                var thread = body.RootElement.TryGetProperty("thread_ts", out var t) ? t.GetString() : null;
                slack.Messages.Enqueue(new Message(channel, body.RootElement.GetProperty("text").GetString()!, thread, ts));
                return Results.Json(new { ok = true, channel, ts });
            });
        });
        slack.BaseUrl = address + "/api";
        return slack;
    }

    private bool Authorized(HttpContext http) => http.Request.Headers.Authorization.ToString() == $"Bearer {Token}";

    public async ValueTask DisposeAsync() => await _app.DisposeAsync();
}
