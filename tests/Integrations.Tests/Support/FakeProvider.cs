using System.Collections.Concurrent;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Integrations.Tests.Support;

public sealed record RecordedRequest(string Method, string PathAndQuery, IReadOnlyDictionary<string, string> Headers);

/// <summary>A stand-in LLM provider on loopback: records each request and answers as <see cref="Respond"/> says.</summary>
public sealed class FakeProvider : IAsyncDisposable
{
    private WebApplication _app = null!;

    public ConcurrentQueue<RecordedRequest> Requests { get; } = new();

    /// <summary>Default: 200 with an empty model list.</summary>
    public Func<HttpContext, int, Task> Respond { get; set; } = (context, _) => context.Response.WriteAsJsonAsync(new { data = Array.Empty<object>() });

    public string BaseUrl { get; private set; } = "";

    public static async Task<FakeProvider> StartAsync()
    {
        var provider = new FakeProvider();
        (provider._app, provider.BaseUrl) = await LoopbackServer.StartAsync(app => app.Run(context =>
        {
            provider.Requests.Enqueue(new RecordedRequest(context.Request.Method, context.Request.Path + context.Request.QueryString,
                context.Request.Headers.ToDictionary(h => h.Key.ToLowerInvariant(), h => h.Value.ToString())));
            return provider.Respond(context, provider.Requests.Count);
        }));
        return provider;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
