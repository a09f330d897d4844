using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Integrations.Benchmarks.Support;

/// <summary>
/// Kestrel on 127.0.0.1 with a port of its own choosing, in the load generator's process: the home of the benchmark's
/// local stand-ins (the echo MCP server, the relay, the fake OpenAI server).
/// </summary>
public static class LoopbackServer
{
    /// <summary>Builds the app, lets <paramref name="configure"/> map its routes, starts it, and answers it with its base address.</summary>
    public static async Task<(WebApplication App, Uri Address)> StartAsync(Action<WebApplication> configure)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(k => k.Listen(IPAddress.Loopback, 0));
        var app = builder.Build();
        configure(app);
        await app.StartAsync();
        return (app, new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First()));
    }

    public static async ValueTask StopAsync(WebApplication? app)
    {
        if (app is null) return;
        await app.StopAsync();
        await app.DisposeAsync();
    }
}
