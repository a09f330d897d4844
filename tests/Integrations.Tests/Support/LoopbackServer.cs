using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Integrations.Tests.Support;

/// <summary>Kestrel on 127.0.0.1 with a port of its own choosing, for the local stand-ins the tests talk to (providers, Vault, OTLP).</summary>
public static class LoopbackServer
{
    /// <summary>Builds the app, lets <paramref name="configure"/> map its routes, starts it, and answers it with its base address.</summary>
    public static async Task<(WebApplication App, string Address)> StartAsync(Action<WebApplication> configure)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        var app = builder.Build();
        configure(app);
        await app.StartAsync();
        return (app, app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
    }
}
