using System.Text.Json;
using Integrations.Benchmarks.Support;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging.Abstractions;
using ModelContextProtocol;
using ModelContextProtocol.Protocol;
using ModelContextProtocol.Server;

namespace Integrations.Benchmarks.ToolsInvoke;

/// <summary>
/// The MCP server both paths of benchmark 4 call: one tool, <c>echo(message)</c>, served by the SDK's
/// <see cref="McpServer"/> over a stateless <see cref="StreamableHttpServerTransport"/> in Kestrel on
/// <c>http://127.0.0.1:&lt;ephemeral&gt;/mcp</c> (the hosting DESIGN.md describes for C# test servers: each POST is
/// read as a <see cref="JsonRpcMessage"/> and answered as <c>text/event-stream</c>). It counts the tools/call
/// requests it answers, so the run can check that every gateway call reached it exactly once.
/// </summary>
public sealed class EchoMcpServer : IAsyncDisposable
{
    private WebApplication? _app;
    private long _toolCalls;

    public Uri Endpoint { get; private set; } = null!;

    public long ToolCalls => Interlocked.Read(ref _toolCalls);

    public async Task StartAsync()
    {
        var options = new McpServerOptions
        {
            ServerInfo = new Implementation { Name = "bench-echo", Version = "1.0.0" },
            ToolCollection =
            [
                McpServerTool.Create((string message) =>
                {
                    Interlocked.Increment(ref _toolCalls);
                    return message;
                }, new McpServerToolCreateOptions
                {
                    Name = "echo",
                    Description = "Echoes back the input message",
                    ReadOnly = true,
                    Destructive = false,
                }),
            ],
        };
        (_app, var address) = await LoopbackServer.StartAsync(app =>
        {
            app.MapPost("/mcp", (HttpContext context) => HandlePostAsync(context, options));
            // Stateless: no standalone GET stream and no session to DELETE.
            app.MapMethods("/mcp", ["GET", "DELETE"], () => Results.StatusCode(StatusCodes.Status405MethodNotAllowed));
        });
        Endpoint = new Uri(address, "/mcp");
    }

    private static async Task HandlePostAsync(HttpContext context, McpServerOptions options)
    {
        var ct = context.RequestAborted;
        JsonRpcMessage? message;
        try
        {
            message = await JsonSerializer.DeserializeAsync<JsonRpcMessage>(context.Request.Body, McpJsonUtilities.DefaultOptions, ct);
        }
        catch (JsonException)
        {
            message = null;
        }
        if (message is null)
        {
            context.Response.StatusCode = StatusCodes.Status400BadRequest;
            return;
        }

        var transport = new StreamableHttpServerTransport(NullLoggerFactory.Instance) { Stateless = true };
        await using var server = McpServer.Create(transport, options, NullLoggerFactory.Instance, context.RequestServices);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var run = server.RunAsync(stop.Token);
        try
        {
            context.Response.ContentType = "text/event-stream";
            context.Response.Headers.CacheControl = "no-cache";
            if (!await transport.HandlePostRequestAsync(message, context.Response.Body, ct))
            {
                context.Response.StatusCode = StatusCodes.Status202Accepted; // a notification or a response: nothing to answer
            }
        }
        finally
        {
            await stop.CancelAsync();
            await transport.DisposeAsync();
            try
            {
                await run;
            }
            catch (OperationCanceledException)
            {
            }
        }
    }

    public ValueTask DisposeAsync() => LoopbackServer.StopAsync(_app);
}
