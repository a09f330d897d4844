using System.Text.Json;
using Integrations.Benchmarks.Support;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging.Abstractions;
using ModelContextProtocol;
using ModelContextProtocol.Client;
using ModelContextProtocol.Protocol;

namespace Integrations.Benchmarks.ToolsInvoke;

/// <summary>
/// Benchmark 4's floor: an HTTP endpoint that passes a tool call on with no governance at all. <c>POST /relay</c>
/// with <c>{"arguments": {...}}</c> calls the echo tool over one shared <see cref="McpClient"/> session and answers
/// the <see cref="CallToolResult"/> as JSON: the two hops every HTTP gateway in front of an MCP server has (the
/// caller's request in, the MCP request out), with no key, policy, schema, audit or database. Whatever the gateway
/// costs beyond this relay is governance; what the relay costs beyond the direct call is the extra hop, which no
/// gateway avoids. It runs in Kestrel on 127.0.0.1 in the load generator's process.
/// </summary>
public sealed class RelayServer : IAsyncDisposable
{
    private WebApplication? _app;
    private McpClient? _client;

    public Uri Endpoint { get; private set; } = null!;

    public async Task StartAsync(Uri mcpEndpoint)
    {
        _client = await McpClient.CreateAsync(new HttpClientTransport(new HttpClientTransportOptions
        {
            Endpoint = mcpEndpoint,
            TransportMode = HttpTransportMode.StreamableHttp,
            EnableStandaloneGetStream = false,
        }, new HttpClient(new SocketsHttpHandler { UseCookies = false }), NullLoggerFactory.Instance, ownsHttpClient: true));

        (_app, var address) = await LoopbackServer.StartAsync(app => app.MapPost("/relay", RelayAsync));
        Endpoint = new Uri(address, "/relay");
    }

    private async Task RelayAsync(HttpContext context)
    {
        var ct = context.RequestAborted;
        using var body = await JsonDocument.ParseAsync(context.Request.Body, cancellationToken: ct);
        var arguments = body.RootElement.TryGetProperty("arguments", out var given) && given.ValueKind == JsonValueKind.Object
            ? given.EnumerateObject().ToDictionary(p => p.Name, p => (object?)p.Value.Clone())
            : new Dictionary<string, object?>();
        var result = await _client!.CallToolAsync("echo", arguments, cancellationToken: ct);
        context.Response.ContentType = "application/json";
        await JsonSerializer.SerializeAsync(context.Response.Body, result, McpJsonUtilities.DefaultOptions, ct);
    }

    public async ValueTask DisposeAsync()
    {
        await LoopbackServer.StopAsync(_app);
        if (_client is not null) await _client.DisposeAsync();
    }
}
