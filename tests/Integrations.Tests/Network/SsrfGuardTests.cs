using System.Net;
using Integrations.Infrastructure.Network;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Tests.Network;

public sealed class SsrfGuardTests
{
    private static SsrfGuard Guard(params string[] trusted) => new(new TrustedHosts(trusted));

    [Theory]
    [InlineData("127.0.0.1")]
    [InlineData("127.255.0.9")]
    [InlineData("10.0.0.1")]
    [InlineData("172.16.5.4")]
    [InlineData("172.31.255.255")]
    [InlineData("192.168.1.1")]
    [InlineData("169.254.169.254")]
    [InlineData("100.64.0.1")]
    [InlineData("100.100.100.200")]
    [InlineData("0.0.0.0")]
    [InlineData("224.0.0.1")]
    [InlineData("255.255.255.255")]
    [InlineData("::1")]
    [InlineData("::")]
    [InlineData("fe80::1")]
    [InlineData("fc00::1")]
    [InlineData("fd00:ec2::254")]
    [InlineData("ff02::1")]
    [InlineData("::ffff:10.0.0.1")]
    [InlineData("::ffff:127.0.0.1")]
    [InlineData("::ffff:169.254.169.254")]
    [InlineData("64:ff9b::a00:1")]
    [InlineData("2002:a00:1::")]
    [InlineData("::10.0.0.1")]
    public void Special_purpose_addresses_are_not_public(string address) =>
        Assert.False(SsrfGuard.IsPublic(IPAddress.Parse(address)));

    [Theory]
    [InlineData("8.8.8.8")]
    [InlineData("93.184.216.34")]
    [InlineData("172.32.0.1")]
    [InlineData("100.128.0.1")]
    [InlineData("2606:4700:4700::1111")]
    [InlineData("::ffff:8.8.8.8")]
    public void Public_addresses_are_public(string address) =>
        Assert.True(SsrfGuard.IsPublic(IPAddress.Parse(address)));

    [Theory]
    [InlineData("https://169.254.169.254/latest/meta-data/")]
    [InlineData("https://10.0.0.1/v1")]
    [InlineData("https://[::ffff:10.0.0.1]/v1")]
    [InlineData("https://[::1]:8443/")]
    [InlineData("http://api.example.com/")]
    [InlineData("ftp://api.example.com/")]
    [InlineData("file:///etc/passwd")]
    public async Task Check_refuses_private_metadata_and_non_https_urls(string url)
    {
        var result = await Guard().CheckAsync(new Uri(url), CancellationToken.None);
        Assert.Equal("ssrf_blocked", result.Error?.Code);
    }

    [Fact]
    public async Task A_host_name_resolving_to_a_private_address_is_refused()
    {
        var guard = new SsrfGuard(new TrustedHosts([])) { Resolve = (_, _) => Task.FromResult(new[] { IPAddress.Parse("93.184.216.34"), IPAddress.Parse("10.1.2.3") }) };

        var result = await guard.CheckAsync(new Uri("https://sneaky.example.com/"), CancellationToken.None);

        Assert.Equal("ssrf_blocked", result.Error?.Code);
        Assert.Contains("10.1.2.3", result.Error!.Detail);
    }

    [Fact]
    public async Task Trusted_hosts_open_loopback_and_http()
    {
        var result = await Guard("127.0.0.1").CheckAsync(new Uri("http://127.0.0.1:9999/"), CancellationToken.None);
        Assert.True(result.IsSuccess);
    }

    [Fact]
    public async Task The_handler_refuses_before_connecting_when_dns_changes_after_the_check()
    {
        var answers = new Queue<IPAddress>([IPAddress.Parse("93.184.216.34"), IPAddress.Loopback]);
        var guard = new SsrfGuard(new TrustedHosts([])) { Resolve = (_, _) => Task.FromResult(new[] { answers.Dequeue() }) };
        Assert.True((await guard.CheckAsync(new Uri("https://rebind.example.com/"), CancellationToken.None)).IsSuccess);

        using var client = new HttpClient(guard.CreateHandler());
        var error = await Assert.ThrowsAsync<HttpRequestException>(() => client.GetAsync("https://rebind.example.com/"));

        Assert.True(SsrfGuard.IsBlocked(error));
    }

    [Fact]
    public async Task The_handler_connects_to_trusted_local_servers_and_does_not_follow_redirects()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        await using var app = builder.Build();
        app.MapGet("/", () => Results.Redirect("http://169.254.169.254/latest/meta-data/"));
        app.MapGet("/ok", () => "fine");
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();

        using var client = new HttpClient(Guard("127.0.0.1").CreateHandler());

        Assert.Equal("fine", await client.GetStringAsync($"{address}/ok"));
        var redirect = await client.GetAsync(address);
        Assert.Equal(HttpStatusCode.Redirect, redirect.StatusCode);

        using var untrusted = new HttpClient(Guard().CreateHandler());
        var blocked = await Assert.ThrowsAsync<HttpRequestException>(() => untrusted.GetAsync($"{address}/ok"));
        Assert.True(SsrfGuard.IsBlocked(blocked));
    }
}
