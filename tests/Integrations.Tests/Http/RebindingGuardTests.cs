using System.Net;
using System.Text.Json;
using Integrations.Tests.Support;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Tests.Http;

/// <summary>
/// DNS rebinding protection, attacked as a rebinding page would: another site's Host on a service listening on loopback
/// only, and another site's Origin, are refused with problem details before authentication; the service's own origin, a
/// configured CORS origin and requests without an Origin pass.
/// </summary>
public sealed class RebindingGuardTests : IAsyncLifetime
{
    private ApiFactory _api = null!;
    private Uri _address = null!;

    public async Task InitializeAsync()
    {
        _api = await ApiFactory.StartAsync();
        _api.UseKestrel(0);
        _api.StartServer();
        _address = new Uri(_api.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
    }

    public async Task DisposeAsync() => await _api.DisposeAsync();

    private async Task<(HttpStatusCode Status, string? Code)> SendAsync(string path, string? host = null, string? origin = null)
    {
        using var client = new HttpClient { BaseAddress = _address };
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        if (host is not null) request.Headers.Host = host;
        if (origin is not null) request.Headers.Add("Origin", origin);
        using var response = await client.SendAsync(request);
        var body = await response.Content.ReadAsStringAsync();
        var code = response.Content.Headers.ContentType?.MediaType == "application/problem+json"
            ? JsonDocument.Parse(body).RootElement.GetProperty("code").GetString()
            : null;
        return (response.StatusCode, code);
    }

    [Fact]
    public async Task Another_sites_host_or_origin_is_refused_and_the_services_own_pass()
    {
        Assert.True(IPAddress.IsLoopback(IPAddress.Parse(_address.Host)) || _address.Host == "localhost");

        Assert.Equal((HttpStatusCode.Forbidden, "host_not_allowed"), await SendAsync("/mcp", host: "evil.example.com"));
        Assert.Equal((HttpStatusCode.Forbidden, "host_not_allowed"), await SendAsync("/health/live", host: $"attacker.example:{_address.Port}"));
        Assert.Equal((HttpStatusCode.Forbidden, "origin_not_allowed"), await SendAsync("/mcp", origin: "http://evil.example.com"));
        Assert.Equal((HttpStatusCode.Forbidden, "origin_not_allowed"), await SendAsync("/health/live", origin: "null"));

        Assert.Equal(HttpStatusCode.OK, (await SendAsync("/health/live")).Status);
        Assert.Equal(HttpStatusCode.OK, (await SendAsync("/health/live", origin: $"http://{_address.Authority}")).Status);
        Assert.Equal(HttpStatusCode.OK, (await SendAsync("/health/live", host: $"localhost:{_address.Port}", origin: $"http://localhost:{_address.Port}")).Status);
        Assert.Equal(HttpStatusCode.OK, (await SendAsync("/health/live", host: "console.localhost")).Status);
        // Behind a proxy that ends TLS the page's origin is https while the service is reached over http.
        Assert.Equal(HttpStatusCode.OK, (await SendAsync("/health/live", origin: $"https://{_address.Authority}")).Status);
        Assert.Equal((HttpStatusCode.Forbidden, "origin_not_allowed"), await SendAsync("/health/live", origin: $"http://{_address.Host}:1"));
        // Past the guard, /mcp asks for its key as before.
        Assert.Equal(HttpStatusCode.Unauthorized, (await SendAsync("/mcp", origin: $"http://{_address.Authority}")).Status);
    }

    [Fact]
    public async Task A_configured_cors_origin_passes_and_on_an_in_memory_host_only_the_origin_rule_applies()
    {
        await using var inMemory = await ApiFactory.StartAsync();
        await using var configured = inMemory.WithWebHostBuilder(b => b.UseSetting("Integrations:Http:CorsOrigins:0", "https://console.example.com"));
        var client = configured.CreateClient();

        using var listed = new HttpRequestMessage(HttpMethod.Get, "/health/live") { Headers = { { "Origin", "https://console.example.com" } } };
        Assert.Equal(HttpStatusCode.OK, (await client.SendAsync(listed)).StatusCode);
        using var other = new HttpRequestMessage(HttpMethod.Get, "/health/live") { Headers = { { "Origin", "https://evil.example.net" } } };
        Assert.Equal(HttpStatusCode.Forbidden, (await client.SendAsync(other)).StatusCode);
        using var foreignHost = new HttpRequestMessage(HttpMethod.Get, "/health/live") { Headers = { Host = "service.example.com" } };
        Assert.Equal(HttpStatusCode.OK, (await client.SendAsync(foreignHost)).StatusCode);
    }
}
