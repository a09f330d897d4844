using System.Text;
using System.Text.Json;
using Integrations.Benchmarks.Support;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Integrations.Benchmarks.LlmGateway;

/// <summary>
/// Benchmark 8's provider: OpenAI's <c>POST /v1/chat/completions</c> as fast as Kestrel answers it, in the load
/// generator's process on 127.0.0.1. A completion is one prepared JSON body; <c>stream: true</c> is the same answer as
/// server-sent events (the role, three content chunks, the finish, the usage chunk when <c>stream_options.include_usage</c>
/// is asked for, <c>[DONE]</c>), each flushed as a provider sends them. It wants its own key as a bearer, so a path
/// that lost the credential fails, and counts the completions it answers.
/// </summary>
public sealed class FakeOpenAiServer : IAsyncDisposable
{
    public const string Key = "sk-bench-fake-provider";
    public const string Answer = "benchmark payload";

    private const string Id = "chatcmpl-bench", Model = "gpt-4o-mini-2024-07-18";
    private const long Created = 1_764_547_200;

    // Before the bodies that embed it: static fields are initialized in the order they are written.
    private static readonly object Usage = new { prompt_tokens = 11, completion_tokens = 3, total_tokens = 14 };

    private static readonly byte[] Completion = JsonSerializer.SerializeToUtf8Bytes(new
    {
        id = Id,
        @object = "chat.completion",
        created = Created,
        model = Model,
        choices = new[] { new { index = 0, message = new { role = "assistant", content = Answer }, logprobs = (object?)null, finish_reason = "stop" } },
        usage = Usage,
    });

    private static readonly byte[][] Chunks =
    [
        Event(Chunk(new { role = "assistant", content = "" }, null)),
        Event(Chunk(new { content = "benchmark" }, null)),
        Event(Chunk(new { content = " " }, null)),
        Event(Chunk(new { content = "payload" }, null)),
        Event(Chunk(new { }, "stop")),
    ];

    private static readonly byte[] UsageChunk = Event(new { id = Id, @object = "chat.completion.chunk", created = Created, model = Model, choices = Array.Empty<object>(), usage = Usage });

    private static readonly byte[] Done = "data: [DONE]\n\n"u8.ToArray();

    private WebApplication? _app;
    private long _completions;

    /// <summary>The base URL an OpenAI client is given: <c>http://127.0.0.1:port/v1</c>.</summary>
    public Uri BaseUrl { get; private set; } = null!;

    public Uri ChatCompletions => new(BaseUrl + "/chat/completions");

    public long Completions => Interlocked.Read(ref _completions);

    public async Task StartAsync()
    {
        (_app, var address) = await LoopbackServer.StartAsync(app => app.MapPost("/v1/chat/completions", AnswerAsync));
        BaseUrl = new Uri(address, "/v1");
    }

    private async Task AnswerAsync(HttpContext context)
    {
        var ct = context.RequestAborted;
        if (context.Request.Headers.Authorization != $"Bearer {Key}")
        {
            context.Response.StatusCode = StatusCodes.Status401Unauthorized;
            await context.Response.WriteAsJsonAsync(new { error = new { message = "Incorrect API key provided.", type = "invalid_request_error", code = "invalid_api_key" } }, ct);
            return;
        }
        using var body = await JsonDocument.ParseAsync(context.Request.Body, cancellationToken: ct);
        var root = body.RootElement;
        if (!root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.String || !root.TryGetProperty("messages", out _))
        {
            context.Response.StatusCode = StatusCodes.Status400BadRequest;
            await context.Response.WriteAsJsonAsync(new { error = new { message = "model and messages are required", type = "invalid_request_error" } }, ct);
            return;
        }
        Interlocked.Increment(ref _completions);
        if (!(root.TryGetProperty("stream", out var stream) && stream.ValueKind == JsonValueKind.True))
        {
            context.Response.ContentType = "application/json";
            context.Response.ContentLength = Completion.Length;
            await context.Response.Body.WriteAsync(Completion, ct);
            return;
        }

        var includeUsage = root.TryGetProperty("stream_options", out var options) && options.ValueKind == JsonValueKind.Object
                           && options.TryGetProperty("include_usage", out var usage) && usage.ValueKind == JsonValueKind.True;
        context.Response.ContentType = "text/event-stream";
        context.Response.Headers.CacheControl = "no-cache";
        foreach (var chunk in Chunks) await SendAsync(context, chunk, ct);
        if (includeUsage) await SendAsync(context, UsageChunk, ct);
        await SendAsync(context, Done, ct);
    }

    private static async Task SendAsync(HttpContext context, byte[] chunk, CancellationToken ct)
    {
        await context.Response.Body.WriteAsync(chunk, ct);
        await context.Response.Body.FlushAsync(ct);
    }

    private static object Chunk(object delta, string? finish) => new
    {
        id = Id,
        @object = "chat.completion.chunk",
        created = Created,
        model = Model,
        choices = new[] { new { index = 0, delta, logprobs = (object?)null, finish_reason = finish } },
    };

    private static byte[] Event(object payload) => Encoding.UTF8.GetBytes("data: " + JsonSerializer.Serialize(payload) + "\n\n");

    public ValueTask DisposeAsync() => LoopbackServer.StopAsync(_app);
}
