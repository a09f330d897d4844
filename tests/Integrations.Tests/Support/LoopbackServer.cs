using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Integrations.Tests.Support;

/// <summary>Kestrel on 127.0.0.1 with a port of its own choosing, for the local stand-ins the tests talk to (providers, Vault, OTLP).</summary>
public static class LoopbackServer
{
    /// <summary>
    /// Builds the app, lets <paramref name="configure"/> map its routes, starts it, and answers it with its base address;
    /// with <paramref name="https"/>, over TLS as that configures it (see <see cref="TestPki.RequireClientCertificates"/>).
    /// </summary>
    public static async Task<(WebApplication App, string Address)> StartAsync(Action<WebApplication> configure, Action<HttpsConnectionAdapterOptions>? https = null)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        if (https is null) builder.WebHost.UseUrls("http://127.0.0.1:0");
        else builder.WebHost.UseKestrelHttpsConfiguration().UseKestrel(k => k.Listen(IPAddress.Loopback, 0, listen => listen.UseHttps(https)));
        var app = builder.Build();
        configure(app);
        await app.StartAsync();
        return (app, app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
    }
}
