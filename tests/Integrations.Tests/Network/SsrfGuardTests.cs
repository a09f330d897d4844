using System.Net;
using Integrations.Infrastructure.Network;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Tests.Network;

public sealed class SsrfGuardTests
{
    private static SsrfGuard Guard(params string[] trusted) => new(new EgressAllowList(trusted));

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

    /// <summary>
    /// One address inside each range of <see cref="SpecialPurposeAddresses.Ranges"/>, chosen outside any more specific
    /// range, so the range named in the refusal is this one. A range added to the table needs its row here.
    /// </summary>
    public static TheoryData<string, string> RangeSamples() => new()
    {
        { "0.0.0.0/8", "0.1.2.3" },
        { "0.0.0.0/32", "0.0.0.0" },
        { "10.0.0.0/8", "10.1.2.3" },
        { "100.64.0.0/10", "100.100.100.200" },
        { "127.0.0.0/8", "127.0.0.2" },
        { "169.254.0.0/16", "169.254.169.254" },
        { "172.16.0.0/12", "172.20.0.1" },
        { "192.0.0.0/24", "192.0.0.100" },
        { "192.0.0.0/29", "192.0.0.5" },
        { "192.0.0.8/32", "192.0.0.8" },
        { "192.0.0.9/32", "192.0.0.9" },
        { "192.0.0.10/32", "192.0.0.10" },
        { "192.0.0.170/31", "192.0.0.171" },
        { "192.0.2.0/24", "192.0.2.1" },
        { "192.31.196.0/24", "192.31.196.1" },
        { "192.52.193.0/24", "192.52.193.1" },
        { "192.88.99.0/24", "192.88.99.1" },
        { "192.168.0.0/16", "192.168.1.1" },
        { "192.175.48.0/24", "192.175.48.1" },
        { "198.18.0.0/15", "198.19.0.1" },
        { "198.51.100.0/24", "198.51.100.1" },
        { "203.0.113.0/24", "203.0.113.1" },
        { "240.0.0.0/4", "240.0.0.1" },
        { "255.255.255.255/32", "255.255.255.255" },
        { "224.0.0.0/4", "239.255.255.250" },
        { "::1/128", "::1" },
        { "::/128", "::" },
        { "::ffff:0:0/96", "::ffff:10.0.0.1" },
        { "64:ff9b::/96", "64:ff9b::a9fe:a9fe" },
        { "64:ff9b:1::/48", "64:ff9b:1::808:808" },
        { "100::/64", "100::1" },
        { "100:0:0:1::/64", "100:0:0:1::1" },
        { "2001::/23", "2001:100::1" },
        { "2001::/32", "2001:0:4136:e378:8000:63bf:3fff:fdd2" },
        { "2001:1::1/128", "2001:1::1" },
        { "2001:1::2/128", "2001:1::2" },
        { "2001:1::3/128", "2001:1::3" },
        { "2001:2::/48", "2001:2::1" },
        { "2001:3::/32", "2001:3::1" },
        { "2001:4:112::/48", "2001:4:112::1" },
        { "2001:10::/28", "2001:10::1" },
        { "2001:20::/28", "2001:20::1" },
        { "2001:30::/28", "2001:30::1" },
        { "2001:db8::/32", "2001:db8::1" },
        { "2002::/16", "2002:a00:1::" },
        { "2620:4f:8000::/48", "2620:4f:8000::1" },
        { "3fff::/20", "3fff::1" },
        { "5f00::/16", "5f00::1" },
        { "fc00::/7", "fd00:ec2::254" },
        { "fe80::/10", "fe80::1" },
        { "::/96", "::808:808" },
        { "::ffff:0:0:0/96", "::ffff:0:a00:1" },
        { "fec0::/10", "fec0::1" },
        { "ff00::/8", "ff02::1" },
    };

    [Theory]
    [MemberData(nameof(RangeSamples))]
    public async Task Each_special_purpose_range_is_refused_as_a_literal_and_behind_a_host_name(string cidr, string address)
    {
        var ip = IPAddress.Parse(address);
        Assert.Equal(cidr, SpecialPurposeAddresses.Judge(ip).Range?.Cidr);

        var literal = await Guard().CheckHostAsync(address, CancellationToken.None);
        Assert.Equal("ssrf_blocked", literal.Error?.Code);
        Assert.Contains($" {cidr} (", literal.Error!.Detail);

        var named = await new SsrfGuard(new EgressAllowList([])) { Resolve = (_, _) => Task.FromResult(new[] { ip }) }
            .CheckAsync(new Uri("https://innocent.example.com/v1"), CancellationToken.None);
        Assert.Equal("ssrf_blocked", named.Error?.Code);
        Assert.Contains($"resolves to {ip}, in ", named.Error!.Detail);
    }

    [Fact]
    public void Every_range_of_the_table_has_a_sample_address_tested()
    {
        var tested = RangeSamples().Select(row => (string)row[0]).ToHashSet();
        Assert.Equal(SpecialPurposeAddresses.Ranges.Select(r => r.Cidr).Order(), tested.Order());
        Assert.All(SpecialPurposeAddresses.Ranges, r => Assert.Matches(@"^RFC \d+", r.Rfc));
    }

    [Theory]
    [InlineData("::ffff:0:7f00:1", "127.0.0.1")]
    [InlineData("64:ff9b::7f00:1", "127.0.0.1")]
    [InlineData("64:ff9b::a9fe:a9fe", "169.254.169.254")]
    [InlineData("64:ff9b:1::a00:1", "10.0.0.1")]
    [InlineData("2002:a9fe:a9fe::1", "169.254.169.254")]
    [InlineData("2001:0:808:808::80ff:fffe", "127.0.0.1")] // Teredo: the client address is stored inverted
    [InlineData("::7f00:1", "127.0.0.1")]
    public async Task IPv6_addresses_that_carry_an_internal_IPv4_address_are_refused_naming_it(string address, string carried)
    {
        var result = await Guard().CheckHostAsync(address, CancellationToken.None);

        Assert.Equal("ssrf_blocked", result.Error?.Code);
        Assert.Contains("carrying ", result.Error!.Detail);
        Assert.Contains($"{carried} (in ", result.Error!.Detail);
    }

    [Theory]
    [InlineData("64:ff9b::808:808")]
    [InlineData("2002:808:808::1")]
    [InlineData("::ffff:8.8.8.8")]
    public void A_translation_to_a_public_IPv4_address_is_public(string address) =>
        Assert.True(SsrfGuard.IsPublic(IPAddress.Parse(address)));

    [Theory]
    [InlineData("https://api.example.com/v1#fragment")]
    [InlineData("https://api.example.com/v1#")]
    [InlineData("https://user:secret@api.example.com/v1")]
    [InlineData("https://@api.example.com/v1")]
    public async Task Urls_with_a_fragment_or_user_info_are_refused_before_any_lookup(string url)
    {
        var lookups = 0;
        var guard = new SsrfGuard(new EgressAllowList([])) { Resolve = (_, _) => { lookups++; return Task.FromResult(new[] { IPAddress.Parse("93.184.216.34") }); } };

        var result = await guard.CheckAsync(new Uri(url), CancellationToken.None);

        Assert.Equal("ssrf_blocked", result.Error?.Code);
        Assert.Equal(0, lookups);
        Assert.NotNull(EgressUrl.Problem(url));
    }

    [Fact]
    public async Task A_cidr_on_the_allow_list_opens_its_addresses_behind_any_name_but_plain_http_only_for_listed_hosts_and_literals()
    {
        var allow = new EgressAllowList(["172.18.0.0/16", "mcp.internal"]);
        var guard = new SsrfGuard(allow)
        {
            Resolve = (host, _) => Task.FromResult(new[] { IPAddress.Parse(host.StartsWith("other", StringComparison.Ordinal) ? "172.19.0.5" : "172.18.0.5") }),
        };

        Assert.True((await guard.CheckAsync(new Uri("https://mcp.compose/mcp"), CancellationToken.None)).IsSuccess);
        Assert.True((await guard.CheckAsync(new Uri("http://172.18.0.5:3000/mcp"), CancellationToken.None)).IsSuccess);
        Assert.True((await guard.CheckAsync(new Uri("http://mcp.internal:3000/mcp"), CancellationToken.None)).IsSuccess);
        Assert.True((await guard.CheckHostAsync("::ffff:172.18.0.9", CancellationToken.None)).IsSuccess);

        Assert.Equal("ssrf_blocked", (await guard.CheckAsync(new Uri("http://mcp.compose/mcp"), CancellationToken.None)).Error?.Code);
        Assert.Equal("ssrf_blocked", (await guard.CheckAsync(new Uri("https://other.compose/mcp"), CancellationToken.None)).Error?.Code);
        Assert.Equal("ssrf_blocked", (await guard.CheckHostAsync("169.254.169.254", CancellationToken.None)).Error?.Code);
    }

    [Fact]
    public void The_allow_list_reads_its_own_section_and_the_earlier_trusted_hosts_name_and_refuses_malformed_blocks()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Integrations:Network:EgressAllow:0"] = "10.20.0.0/16",
            ["Integrations:Network:TrustedHosts:0"] = "legacy.local",
        }).Build();

        var allow = EgressAllowList.FromConfiguration(configuration);

        Assert.True(allow.AllowsAddress(IPAddress.Parse("10.20.3.4")));
        Assert.True(allow.AllowsHost("legacy.local"));
        Assert.False(allow.AllowsAddress(IPAddress.Parse("10.21.0.1")));
        var error = Assert.Throws<InvalidOperationException>(() => new EgressAllowList(["10.20.0.1/16"]));
        Assert.Contains("EgressAllow", error.Message);
    }

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
    public async Task A_name_that_does_not_resolve_is_an_unreachable_upstream_not_a_blocked_address()
    {
        var guard = new SsrfGuard(new EgressAllowList([]))
        {
            Resolve = (_, _) => Task.FromException<IPAddress[]>(new System.Net.Sockets.SocketException((int)System.Net.Sockets.SocketError.HostNotFound)),
        };

        var checkedUrl = await guard.CheckAsync(new Uri("https://gone.example.com/mcp"), CancellationToken.None);
        Assert.Equal(("upstream_unreachable", 502), (checkedUrl.Error?.Code, checkedUrl.Error?.Status));

        using var client = new HttpClient(guard.CreateHandler());
        var sent = await Record.ExceptionAsync(() => client.GetAsync("https://gone.example.com/mcp"));
        Assert.IsType<HttpRequestException>(sent);
        Assert.False(SsrfGuard.IsBlocked(sent));
    }

    [Fact]
    public async Task A_host_name_resolving_to_a_private_address_is_refused()
    {
        var guard = new SsrfGuard(new EgressAllowList([])) { Resolve = (_, _) => Task.FromResult(new[] { IPAddress.Parse("93.184.216.34"), IPAddress.Parse("10.1.2.3") }) };

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

    [Theory]
    [InlineData("127.0.0.1")]
    [InlineData("64:ff9b:1::7f00:1")]
    [InlineData("::ffff:0:7f00:1")]
    [InlineData("2001:0:808:808::80ff:fffe")]
    public async Task The_handler_refuses_before_connecting_when_dns_changes_after_the_check(string rebound)
    {
        var answers = new Queue<IPAddress>([IPAddress.Parse("93.184.216.34"), IPAddress.Parse(rebound)]);
        var guard = new SsrfGuard(new EgressAllowList([])) { Resolve = (_, _) => Task.FromResult(new[] { answers.Dequeue() }) };
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
