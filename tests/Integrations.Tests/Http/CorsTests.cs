using System.Net;
using Integrations.Infrastructure.Http;
using Integrations.Tests.Support;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Configuration;

namespace Integrations.Tests.Http;

public sealed class CorsTests(ApiFixture fixture) : IClassFixture<ApiFixture>
{
    private static HttpRequestMessage Preflight(string origin)
    {
        var request = new HttpRequestMessage(HttpMethod.Options, "/integrations");
        request.Headers.Add("Origin", origin);
        request.Headers.Add("Access-Control-Request-Method", "POST");
        request.Headers.Add("Access-Control-Request-Headers", "authorization,content-type");
        return request;
    }

    [Fact]
    public async Task Cross_origin_calls_are_off_by_default_and_allowed_only_for_the_configured_origins()
    {
        var byDefault = await fixture.Factory.CreateClient().SendAsync(Preflight("https://console.example.com"));
        Assert.False(byDefault.Headers.Contains("Access-Control-Allow-Origin"));

        await using var configured = fixture.Factory.WithWebHostBuilder(b => b.UseSetting("Integrations:Http:CorsOrigins:0", "https://console.example.com"));
        var client = configured.CreateClient();
        var allowed = await client.SendAsync(Preflight("https://console.example.com"));
        Assert.Equal(HttpStatusCode.NoContent, allowed.StatusCode);
        Assert.Equal("https://console.example.com", allowed.Headers.GetValues("Access-Control-Allow-Origin").Single());
        Assert.Contains("authorization", allowed.Headers.GetValues("Access-Control-Allow-Headers").Single(), StringComparison.OrdinalIgnoreCase);

        var other = await client.SendAsync(Preflight("https://evil.example.net"));
        Assert.False(other.Headers.Contains("Access-Control-Allow-Origin"));

        var get = new HttpRequestMessage(HttpMethod.Get, "/health/live");
        get.Headers.Add("Origin", "https://console.example.com");
        var answered = await client.SendAsync(get);
        Assert.Contains("X-Request-Id", answered.Headers.GetValues("Access-Control-Expose-Headers").Single());
    }

    [Theory]
    [InlineData("*")]
    [InlineData("https://console.example.com/app")]
    [InlineData("console.example.com")]
    public void A_setting_that_is_not_an_origin_stops_start_up(string origin)
    {
        var configuration = new ConfigurationBuilder()
            .AddInMemoryCollection([new("Integrations:Http:CorsOrigins:0", origin)]).Build();
        var e = Assert.Throws<InvalidOperationException>(() => CorsOrigins.FromConfiguration(configuration));
        Assert.Contains("is not an origin", e.Message);
    }
}
