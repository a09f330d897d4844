using System.Net.Sockets;
using System.Text;
using Integrations.Tests.Support;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Tests.Platform;

/// <summary>What the real server (Kestrel, not the test server) answers to requests it refuses itself, sent as raw bytes.</summary>
public sealed class KestrelRefusalTests : IAsyncLifetime
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

    private async Task<(int Status, string Head, string Body)> SendRawAsync(byte[] request)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(_address.Host, _address.Port);
        var stream = tcp.GetStream();
        try
        {
            await stream.WriteAsync(request);
        }
        catch (IOException)
        {
            // the server may answer and close before it has read everything
        }
        using var answer = new MemoryStream();
        var buffer = new byte[8192];
        try
        {
            int read;
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            while ((read = await stream.ReadAsync(buffer, timeout.Token)) > 0)
            {
                answer.Write(buffer, 0, read);
                var text = Encoding.UTF8.GetString(answer.ToArray());
                var end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
                if (end >= 0 && IsComplete(text, end)) break;
            }
        }
        catch (IOException)
        {
        }
        var all = Encoding.UTF8.GetString(answer.ToArray());
        var split = all.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        var head = split < 0 ? all : all[..split];
        return (int.Parse(head.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture), head, split < 0 ? "" : all[(split + 4)..]);
    }

    private static bool IsComplete(string text, int headEnd)
    {
        var head = text[..headEnd];
        var length = head.Split("\r\n").FirstOrDefault(l => l.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase));
        if (length is not null) return text.Length - headEnd - 4 >= int.Parse(length["Content-Length:".Length..].Trim(), System.Globalization.CultureInfo.InvariantCulture);
        return !head.Contains("chunked", StringComparison.OrdinalIgnoreCase) || text.EndsWith("0\r\n\r\n", StringComparison.Ordinal);
    }

    private byte[] Request(string target, string headers = "", string body = "") =>
        Encoding.UTF8.GetBytes($"GET {target} HTTP/1.1\r\nHost: {_address.Authority}\r\n{headers}Connection: close\r\n\r\n{body}");

    private static string? Code((int Status, string Head, string Body) answer)
    {
        var body = answer.Body;
        if (answer.Head.Contains("chunked", StringComparison.OrdinalIgnoreCase))
        {
            var start = body.IndexOf('{', StringComparison.Ordinal);
            body = start < 0 ? "" : body[start..(body.LastIndexOf('}') + 1)];
        }
        return body.Length == 0 ? null : System.Text.Json.JsonDocument.Parse(body).RootElement.GetProperty("code").GetString();
    }

    [Fact]
    public async Task An_overlong_target_overlarge_headers_and_a_chunked_body_over_the_cap_are_problem_details_with_codes()
    {
        var longTarget = await SendRawAsync(Request("/integrations?x=" + new string('a', 9000)));
        var largeHeaders = await SendRawAsync(Request("/integrations", $"X-Big: {new string('a', 33000)}\r\n"));
        var chunked = await SendRawAsync(Encoding.ASCII.GetBytes(
            $"POST /integrations HTTP/1.1\r\nHost: {_address.Authority}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            + string.Concat(Enumerable.Repeat($"{8192:x}\r\n{new string(' ', 8192)}\r\n", 140)) + "0\r\n\r\n"));

        Assert.Equal((414, "uri_too_long"), (longTarget.Status, Code(longTarget)));
        Assert.Equal((431, "headers_too_large"), (largeHeaders.Status, Code(largeHeaders)));
        Assert.Equal((413, "payload_too_large"), (chunked.Status, Code(chunked)));
    }

    /// <summary>
    /// What Kestrel refuses before any middleware runs keeps its bare answer (no hook can write a body there): a
    /// request line that does not parse, a NUL in the path, a target or headers beyond twice the limits above.
    /// </summary>
    [Fact]
    public async Task What_kestrel_refuses_before_the_pipeline_is_still_refused()
    {
        Assert.Equal(400, (await SendRawAsync(Encoding.ASCII.GetBytes("GARBAGE\r\n\r\n"))).Status);
        Assert.Equal(400, (await SendRawAsync(Request("/integrations/a%00b"))).Status);
        Assert.Equal(414, (await SendRawAsync(Request("/integrations?x=" + new string('a', 17000)))).Status);
        Assert.Equal(431, (await SendRawAsync(Request("/integrations", $"X-Big: {new string('a', 66000)}\r\n"))).Status);
    }
}
