using System.Net;
using System.Net.Http.Headers;
using System.Text;
using Integrations.Infrastructure.Mcp;

namespace Integrations.Tests.McpServers;

/// <summary>The response cap: a plain body as a whole, an event stream per SSE event.</summary>
public sealed class ResponseSizeLimitTests
{
    private sealed class Canned(string body, string mediaType, bool withLength) : HttpMessageHandler
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken ct)
        {
            var content = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes(body)));
            content.Headers.ContentType = new MediaTypeHeaderValue(mediaType);
            if (withLength) content.Headers.ContentLength = Encoding.UTF8.GetByteCount(body);
            return Task.FromResult(new HttpResponseMessage(HttpStatusCode.OK) { Content = content });
        }
    }

    private static async Task<string> ReadAsync(string body, string mediaType, bool withLength = false)
    {
        using var client = new HttpClient(new McpResponseSizeLimit(4096) { InnerHandler = new Canned(body, mediaType, withLength) });
        using var response = await client.GetAsync("http://mcp.test/", HttpCompletionOption.ResponseHeadersRead);
        return await response.Content.ReadAsStringAsync();
    }

    private static string Event(int dataBytes, string newline = "\n") => $"event: message{newline}data: {new string('x', dataBytes)}{newline}{newline}";

    [Fact]
    public async Task Many_small_events_pass_even_when_the_stream_is_larger_than_the_cap()
    {
        var stream = string.Concat(Enumerable.Repeat(Event(1000), 20)) + string.Concat(Enumerable.Repeat(Event(1000, "\r\n"), 20));

        Assert.Equal(stream.Length, (await ReadAsync(stream, "text/event-stream")).Length);
    }

    [Fact]
    public async Task One_event_over_the_cap_fails()
    {
        var stream = Event(100) + Event(5000);

        await Assert.ThrowsAsync<McpResponseTooLargeException>(() => ReadAsync(stream, "text/event-stream"));
    }

    [Fact]
    public async Task A_plain_body_over_the_cap_fails_whether_or_not_it_declares_its_length()
    {
        var body = "{\"jsonrpc\":\"2.0\",\"result\":\"" + new string('x', 5000) + "\"}";

        await Assert.ThrowsAsync<McpResponseTooLargeException>(() => ReadAsync(body, "application/json", withLength: true));
        await Assert.ThrowsAsync<McpResponseTooLargeException>(() => ReadAsync(body, "application/json"));
        Assert.Equal(100, (await ReadAsync(new string('y', 100), "application/json", withLength: true)).Length);
    }
}
