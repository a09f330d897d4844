// An in-process MCP server for tests: the SDK's McpServer over a stateless StreamableHttpServerTransport in Kestrel,
// on http://127.0.0.1:<ephemeral>/mcp.
//  - built-in tools: echo, slow, throws, tool-error, protocol-error, crash, big (see DefaultTools)
//  - the tool list can be changed at runtime (SetTool / RemoveTool / ReplaceTools) to test drift
//  - optional bearer token: RequiredBearerToken != null => 401 + WWW-Authenticate when missing/wrong
//  - records every request's headers (ReceivedRequests) and Authorization headers
//  - optional legacy session emulation (IssueSessions): hands out Mcp-Session-Id on initialize and
//    answers 404 for unknown ids; ExpireSessions() forgets them (tests re-initialization on expiry)
//  - faults: ForcedStatusCode, Hang (never answers), AbortListMidResponse (tools/list answer cut off),
//    RespondWithHtml (not MCP at all), Delay (slow answers), RejectPing (ping is "method not found")
using System.Collections.Concurrent;
using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using ModelContextProtocol;
using ModelContextProtocol.Protocol;
using ModelContextProtocol.Server;

namespace Integrations.Tests.Support;

/// <summary>A tool served by <see cref="TestMcpServer"/>: its protocol definition and its behaviour.</summary>
public sealed record TestTool(
    string Name,
    string? Description,
    JsonElement InputSchema,
    Func<JsonObject, CancellationToken, ValueTask<CallToolResult>> Handler,
    ToolAnnotations? Annotations = null,
    JsonElement? OutputSchema = null)
{
    public static JsonElement Schema(string json) => JsonDocument.Parse(json).RootElement.Clone();

    public static CallToolResult Text(string text, bool isError = false) =>
        new() { Content = [new TextContentBlock { Text = text }], IsError = isError };

    public Tool ToProtocolTool() => new()
    {
        Name = Name,
        Description = Description,
        InputSchema = InputSchema,
        OutputSchema = OutputSchema,
        Annotations = Annotations,
    };
}

/// <summary>A request as the server received it (for asserting which headers a caller sent).</summary>
public sealed record ReceivedRequest(string Method, string? JsonRpcMethod, IReadOnlyDictionary<string, string> Headers, string? ClientCertificate = null)
{
    public string? Authorization => Headers.TryGetValue("Authorization", out var v) ? v : null;
}

public sealed class TestMcpServer : IAsyncDisposable
{
    private const string SessionHeader = "Mcp-Session-Id";
    private readonly object _toolsLock = new();
    private List<TestTool> _tools = DefaultTools().ToList(); // replaced copy-on-write, order preserved
    private readonly ConcurrentQueue<ReceivedRequest> _received = new();
    private readonly ConcurrentDictionary<string, byte> _sessions = new();
    private readonly ILoggerFactory _loggerFactory;
    private WebApplication? _app;
    private int _slowCancellations;
    private int _toolCalls;

    public TestMcpServer(ILoggerFactory? loggerFactory = null) =>
        _loggerFactory = loggerFactory ?? NullLoggerFactory.Instance;

    /// <summary>When set, POSTs without "Authorization: Bearer {token}" get 401.</summary>
    public string? RequiredBearerToken { get; set; }

    /// <summary>Header checked for the token (default Authorization, value "Bearer x"); any other name: raw value.</summary>
    public string AuthHeaderName { get; set; } = "Authorization";

    /// <summary>When set, the server listens on HTTPS configured by it (mutual TLS: <see cref="TestPki.RequireClientCertificates"/>).</summary>
    public Action<Microsoft.AspNetCore.Server.Kestrel.Https.HttpsConnectionAdapterOptions>? Https { get; set; }

    /// <summary>Emulate a stateful (2025-xx) server: issue Mcp-Session-Id on initialize, 404 on unknown ids.</summary>
    public bool IssueSessions { get; set; }

    /// <summary>When set, every POST /mcp is answered with this status and a small plain-text body.</summary>
    public int? ForcedStatusCode { get; set; }

    /// <summary>The next <paramref name="count"/> POSTs are answered with <paramref name="status"/>, then the server recovers.</summary>
    public void FailNext(int count, int status = 503)
    {
        _failStatus = status;
        Volatile.Write(ref _failuresLeft, count);
    }

    private int _failuresLeft;
    private int _failStatus;

    /// <summary>Every POST waits until the client gives up (a server that accepts connections and never answers).</summary>
    public bool Hang { get; set; }

    /// <summary>tools/list answers start an SSE event, then the connection is aborted mid-response.</summary>
    public bool AbortListMidResponse { get; set; }

    /// <summary>Every POST gets a 200 HTML page: a web server, not an MCP server.</summary>
    public bool RespondWithHtml { get; set; }

    /// <summary>Every POST is answered after this delay.</summary>
    public TimeSpan Delay { get; set; }

    /// <summary>ping is answered with a JSON-RPC "method not found" error.</summary>
    public bool RejectPing { get; set; }

    public int Count(string jsonRpcMethod) => _received.Count(r => r.JsonRpcMethod == jsonRpcMethod);

    /// <summary>When set, tools/list answers in pages of this size with an opaque nextCursor.</summary>
    public int? ToolsPageSize { get; set; }

    public string ServerName { get; set; } = "test-mcp-server";
    public string ServerVersion { get; set; } = "1.0.0";

    public Uri Endpoint { get; private set; } = null!;
    public IReadOnlyCollection<ReceivedRequest> ReceivedRequests => _received.ToArray();
    public IReadOnlyList<string?> ReceivedAuthorizationHeaders => _received.Select(r => r.Authorization).ToList();
    public int SlowCancellations => Volatile.Read(ref _slowCancellations);
    public int ToolCalls => Volatile.Read(ref _toolCalls);
    public IReadOnlyList<TestTool> Tools => Volatile.Read(ref _tools);

    public void ClearReceived() => _received.Clear();
    public void ExpireSessions() => _sessions.Clear();

    /// <summary>Adds the tool, or replaces the tool of the same name (drift: new description/schema).</summary>
    public void SetTool(TestTool tool)
    {
        lock (_toolsLock)
        {
            var next = _tools.ToList();
            var i = next.FindIndex(t => t.Name == tool.Name);
            if (i >= 0) next[i] = tool; else next.Add(tool);
            Volatile.Write(ref _tools, next);
        }
    }

    public bool RemoveTool(string name)
    {
        lock (_toolsLock)
        {
            var next = _tools.Where(t => t.Name != name).ToList();
            var removed = next.Count != _tools.Count;
            Volatile.Write(ref _tools, next);
            return removed;
        }
    }

    public void ReplaceTools(IEnumerable<TestTool> tools)
    {
        lock (_toolsLock) Volatile.Write(ref _tools, tools.ToList());
    }

    public async Task StartAsync(CancellationToken ct = default)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        if (Https is { } https) builder.WebHost.UseKestrelHttpsConfiguration();
        builder.WebHost.UseKestrel(k => k.Listen(IPAddress.Loopback, 0, listen =>
        {
            if (Https is { } https) listen.UseHttps(https);
        }));
        _app = builder.Build();
        _app.MapPost("/mcp", HandlePostAsync);
        // Stateless server: no standalone GET stream, no DELETE. 405 tells the client so.
        _app.MapMethods("/mcp", ["GET", "DELETE"], (HttpContext ctx) =>
        {
            Record(ctx, null);
            return Results.StatusCode(StatusCodes.Status405MethodNotAllowed);
        });
        await _app.StartAsync(ct);
        var address = _app.Services.GetRequiredService<IServer>().Features
            .Get<IServerAddressesFeature>()!.Addresses.First();
        Endpoint = new Uri(new Uri(address.Replace("[::]", "127.0.0.1")), "/mcp");
    }

    private async Task HandlePostAsync(HttpContext ctx)
    {
        var ct = ctx.RequestAborted;
        JsonRpcMessage? message = null;
        try
        {
            message = await JsonSerializer.DeserializeAsync<JsonRpcMessage>(ctx.Request.Body, McpJsonUtilities.DefaultOptions, ct);
        }
        catch (JsonException) { }
        Record(ctx, (message as JsonRpcRequest)?.Method ?? (message as JsonRpcNotification)?.Method);

        if (Hang)
        {
            try
            {
                await Task.Delay(Timeout.Infinite, ct);
            }
            catch (OperationCanceledException) { }
            return;
        }
        if (Delay > TimeSpan.Zero) await Task.Delay(Delay, ct);
        if (RespondWithHtml)
        {
            ctx.Response.ContentType = "text/html";
            await ctx.Response.WriteAsync("<!doctype html><html><body>Welcome to nginx!</body></html>", ct);
            return;
        }
        if (Interlocked.Decrement(ref _failuresLeft) >= 0)
        {
            ctx.Response.StatusCode = _failStatus;
            await ctx.Response.WriteAsync($"temporarily failing ({_failStatus})", ct);
            return;
        }
        if (ForcedStatusCode is int forced)
        {
            ctx.Response.StatusCode = forced;
            await ctx.Response.WriteAsync($"forced status {forced}", ct);
            return;
        }
        if (!IsAuthorized(ctx.Request))
        {
            ctx.Response.StatusCode = StatusCodes.Status401Unauthorized;
            ctx.Response.Headers.WWWAuthenticate = "Bearer";
            return;
        }
        if (message is null)
        {
            ctx.Response.StatusCode = StatusCodes.Status400BadRequest;
            return;
        }

        var isInitialize = message is JsonRpcRequest { Method: RequestMethods.Initialize };
        if (IssueSessions)
        {
            if (isInitialize)
            {
                var id = Guid.NewGuid().ToString("N");
                _sessions[id] = 0;
                ctx.Response.Headers[SessionHeader] = id;
            }
            else if (ctx.Request.Headers.TryGetValue(SessionHeader, out var sid) && !_sessions.ContainsKey(sid.ToString()))
            {
                ctx.Response.StatusCode = StatusCodes.Status404NotFound; // spec: unknown/expired session
                return;
            }
        }

        if (message is JsonRpcRequest { Method: RequestMethods.Ping } ping && RejectPing)
        {
            ctx.Response.ContentType = "application/json";
            await ctx.Response.WriteAsync(
                $$$"""{"jsonrpc":"2.0","id":{{{JsonSerializer.Serialize(ping.Id, McpJsonUtilities.DefaultOptions)}}},"error":{"code":-32601,"message":"Method not found: ping"}}""", ct);
            return;
        }
        if (message is JsonRpcRequest { Method: RequestMethods.ToolsList } && AbortListMidResponse)
        {
            ctx.Response.ContentType = "text/event-stream";
            await ctx.Response.WriteAsync("event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":", ct);
            await ctx.Response.Body.FlushAsync(ct);
            ctx.Abort();
            return;
        }
        if (message is JsonRpcRequest { Method: RequestMethods.ToolsCall } call
            && call.Params?["name"]?.GetValue<string>() == "crash")
        {
            // Simulates a server dying mid-call: the connection is reset after ms milliseconds.
            var ms = call.Params?["arguments"]?["ms"]?.GetValue<int>() ?? 0;
            await Task.Delay(ms, ct);
            ctx.Abort();
            return;
        }

        var transport = new StreamableHttpServerTransport(_loggerFactory) { Stateless = true };
        await using var server = McpServer.Create(transport, CreateOptions(), _loggerFactory, ctx.RequestServices);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var run = server.RunAsync(stop.Token);
        try
        {
            ctx.Response.ContentType = "text/event-stream";
            ctx.Response.Headers.CacheControl = "no-cache";
            var wrote = await transport.HandlePostRequestAsync(message, ctx.Response.Body, ct);
            if (!wrote) ctx.Response.StatusCode = StatusCodes.Status202Accepted; // notification / response
        }
        finally
        {
            stop.Cancel();
            await transport.DisposeAsync();
            try { await run; } catch (OperationCanceledException) { }
        }
    }

    private bool IsAuthorized(HttpRequest request)
    {
        if (RequiredBearerToken is null) return true;
        var value = request.Headers[AuthHeaderName].ToString();
        var expected = string.Equals(AuthHeaderName, "Authorization", StringComparison.OrdinalIgnoreCase)
            ? "Bearer " + RequiredBearerToken
            : RequiredBearerToken;
        return string.Equals(value, expected, StringComparison.Ordinal);
    }

    private void Record(HttpContext ctx, string? jsonRpcMethod) =>
        _received.Enqueue(new ReceivedRequest(
            ctx.Request.Method,
            jsonRpcMethod,
            ctx.Request.Headers.ToDictionary(h => h.Key, h => h.Value.ToString(), StringComparer.OrdinalIgnoreCase),
            ctx.Connection.ClientCertificate?.Subject));

    private McpServerOptions CreateOptions() => new()
    {
        ServerInfo = new Implementation { Name = ServerName, Version = ServerVersion },
        Capabilities = new ServerCapabilities { Tools = new ToolsCapability { ListChanged = false } },
        Handlers = new McpServerHandlers
        {
            ListToolsHandler = (request, _) =>
            {
                var all = Tools;
                if (ToolsPageSize is not int size)
                    return ValueTask.FromResult(new ListToolsResult { Tools = all.Select(t => t.ToProtocolTool()).ToList() });
                var start = request.Params?.Cursor is { } c ? int.Parse(c["page-".Length..]) : 0;
                var next = start + size < all.Count ? $"page-{start + size}" : null;
                return ValueTask.FromResult(new ListToolsResult
                {
                    Tools = all.Skip(start).Take(size).Select(t => t.ToProtocolTool()).ToList(),
                    NextCursor = next,
                });
            },
            CallToolHandler = async (request, ct) =>
            {
                Interlocked.Increment(ref _toolCalls);
                var name = request.Params?.Name;
                var tool = Tools.FirstOrDefault(t => t.Name == name)
                    ?? throw new McpProtocolException($"Unknown tool: '{name}'", McpErrorCode.InvalidParams);
                var args = new JsonObject();
                if (request.Params?.Arguments is { } a)
                    foreach (var (k, v) in a) args[k] = JsonNode.Parse(v.GetRawText());
                try
                {
                    return await tool.Handler(args, ct);
                }
                catch (OperationCanceledException) when (ct.IsCancellationRequested)
                {
                    if (tool.Name == "slow") Interlocked.Increment(ref _slowCancellations);
                    throw;
                }
            },
        },
    };

    /// <summary>echo, slow, throws, tool-error, protocol-error, crash, big.</summary>
    public static IEnumerable<TestTool> DefaultTools()
    {
        yield return new TestTool("echo", "Echoes back the input message",
            TestTool.Schema("""{"type":"object","properties":{"message":{"type":"string"}},"required":["message"]}"""),
            (args, _) => ValueTask.FromResult(TestTool.Text("Echo: " + (string?)args["message"])),
            new ToolAnnotations { ReadOnlyHint = true, DestructiveHint = false });

        yield return new TestTool("slow", "Sleeps for ms milliseconds, then answers; honours cancellation",
            TestTool.Schema("""{"type":"object","properties":{"ms":{"type":"integer","minimum":0}},"required":["ms"]}"""),
            async (args, ct) =>
            {
                var ms = (int?)args["ms"] ?? 0;
                await Task.Delay(ms, ct);
                return TestTool.Text($"slept {ms} ms");
            });

        yield return new TestTool("throws", "Throws an exception on the server",
            TestTool.Schema("""{"type":"object","properties":{}}"""),
            (_, _) => throw new InvalidOperationException("boom (server-side exception)"));

        yield return new TestTool("tool-error", "Returns a result with isError = true",
            TestTool.Schema("""{"type":"object","properties":{}}"""),
            (_, _) => ValueTask.FromResult(TestTool.Text("the tool failed on purpose", isError: true)));

        yield return new TestTool("protocol-error", "Answers with a JSON-RPC error (-32602)",
            TestTool.Schema("""{"type":"object","properties":{}}"""),
            (_, _) => throw new McpProtocolException("bad params on purpose", McpErrorCode.InvalidParams));

        yield return new TestTool("crash", "The HTTP connection is aborted after ms milliseconds (server dies mid-call)",
            TestTool.Schema("""{"type":"object","properties":{"ms":{"type":"integer","minimum":0}}}"""),
            (_, _) => ValueTask.FromResult(TestTool.Text("unreachable")));

        yield return new TestTool("big", "Returns a text of size bytes",
            TestTool.Schema("""{"type":"object","properties":{"size":{"type":"integer","minimum":0}},"required":["size"]}"""),
            (args, _) => ValueTask.FromResult(TestTool.Text(new string('x', (int?)args["size"] ?? 0))),
            new ToolAnnotations { ReadOnlyHint = true });
    }

    public async ValueTask DisposeAsync()
    {
        if (_app is not null)
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
    }
}
