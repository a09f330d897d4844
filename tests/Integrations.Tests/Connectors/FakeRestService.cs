using System.Collections.Concurrent;
using Integrations.Tests.Support;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace Integrations.Tests.Connectors;

/// <summary>
/// A REST service on loopback that records every request as it arrived on the wire (the raw target, headers, body)
/// and answers JSON; paths under <c>/fail</c> answer 500, under <c>/slow</c> wait 5 s, <c>/private</c> needs the
/// expected Authorization header.
/// </summary>
public sealed class FakeRestService : IAsyncDisposable
{
    public sealed record Seen(string Method, string RawTarget, IReadOnlyDictionary<string, string> Headers, string Body);

    private WebApplication _app = null!;

    public string BaseUrl { get; private set; } = null!;

    public ConcurrentQueue<Seen> Requests { get; } = new();

    public string? RequiredAuthorization { get; set; }

    private int _refusals;

    /// <summary>The next <paramref name="count"/> requests are answered 401, whatever they carry (a token the service revoked).</summary>
    public void RefuseNext(int count) => Volatile.Write(ref _refusals, count);

    public static async Task<FakeRestService> StartAsync()
    {
        var service = new FakeRestService();
        (service._app, service.BaseUrl) = await LoopbackServer.StartAsync(app => app.Run(service.HandleAsync));
        return service;
    }

    private async Task HandleAsync(HttpContext http)
    {
        var body = await new StreamReader(http.Request.Body).ReadToEndAsync();
        var raw = http.Features.Get<IHttpRequestFeature>()!.RawTarget;
        Requests.Enqueue(new Seen(http.Request.Method, raw, http.Request.Headers.ToDictionary(h => h.Key, h => h.Value.ToString(), StringComparer.OrdinalIgnoreCase), body));
        var path = http.Request.Path.Value ?? "/";
        if (path.StartsWith("/fail", StringComparison.Ordinal))
        {
            http.Response.StatusCode = 500;
            await http.Response.WriteAsync("boom");
            return;
        }
        if (path.StartsWith("/slow", StringComparison.Ordinal)) await Task.Delay(TimeSpan.FromSeconds(5), http.RequestAborted);
        if (Interlocked.Decrement(ref _refusals) >= 0
            || (RequiredAuthorization is { } expected && http.Request.Headers.Authorization.ToString() != expected))
        {
            http.Response.StatusCode = 401;
            return;
        }
        await http.Response.WriteAsJsonAsync(new { ok = true, path, method = http.Request.Method });
    }

    public async ValueTask DisposeAsync() => await _app.DisposeAsync();
}
