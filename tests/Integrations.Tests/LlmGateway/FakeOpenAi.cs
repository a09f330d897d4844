using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Integrations.Tests.Support;
using Microsoft.AspNetCore.Http;

namespace Integrations.Tests.LlmGateway;

/// <summary>What the fake provider was sent: the body as JSON, the auth header, and the moments it wrote each stream chunk.</summary>
public sealed record ProviderCall(string Path, string Query, JsonObject Body, string? Authorization, string? ApiKeyHeader)
{
    /// <summary>Anthropic's key header (<c>x-api-key</c>) and <c>anthropic-version</c>.</summary>
    public (string? Key, string? Version) Anthropic { get; init; }

    /// <summary>The <c>anthropic-beta</c> header, when one was sent.</summary>
    public string? AnthropicBeta { get; init; }

    /// <summary>When each streamed event left the fake (Stopwatch timestamps).</summary>
    public ConcurrentQueue<long> ChunkSentAt { get; } = new();

    /// <summary>Completed when the gateway went away before the fake finished (the client's disconnect reached the provider).</summary>
    public TaskCompletionSource Aborted { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
}

/// <summary>
/// An OpenAI provider on loopback that speaks the real wire format (chat completions as JSON and as SSE chunks with the
/// usage chunk when <c>stream_options.include_usage</c> is asked for; embeddings). What it does is chosen by the model
/// name, so concurrent tests do not share switches: a model containing <c>rate-429</c> answers 429 with
/// <c>Retry-After: 30</c> (longer than the gateway waits, so it is answered, not retried); <c>fail-500</c> 500; <c>slow</c> waits 1.5 s before its first byte; <c>drip</c> sends its
/// chunks 100 ms apart; <c>drop</c> drops the connection after two chunks; <c>hang</c> sends one chunk and waits;
/// <c>tool</c> answers with a tool call; <c>nousage</c> never sends usage. At <c>/v1/messages</c> it speaks Anthropic's
/// Messages API instead (a message, or its typed stream events): <c>tool</c> there answers a text block and a
/// <c>tool_use</c> block (streamed as <c>input_json_delta</c> pieces), <c>long</c> stops at <c>max_tokens</c>; the echo
/// is of the last block sent (a text, or a tool result's content).
/// </summary>
public sealed class FakeOpenAi : IAsyncDisposable
{
    public const int PromptTokens = 11;
    public const int CompletionTokens = 7;
    public const int CachedTokens = 2;
    public static readonly string[] Words = ["Hello", " from", " the", " fake", " provider"];

    private readonly FakeProvider _server;

    private FakeOpenAi(FakeProvider server) => _server = server;

    public ConcurrentQueue<ProviderCall> Calls { get; } = new();

    /// <summary>The server's root (an <c>azure_openai</c> integration's base URL).</summary>
    public string Root => _server.BaseUrl;

    /// <summary>The base URL an <c>openai_compatible</c> integration points at.</summary>
    public string BaseUrl => _server.BaseUrl + "/v1";

    public static async Task<FakeOpenAi> StartAsync()
    {
        var fake = new FakeOpenAi(await FakeProvider.StartAsync());
        fake._server.Respond = (context, _) => fake.AnswerAsync(context);
        return fake;
    }

    /// <summary>The calls whose body asked for <paramref name="model"/>.</summary>
    public List<ProviderCall> CallsFor(string model) => Calls.Where(c => c.Body["model"]?.GetValue<string>() == model).ToList();

    private async Task AnswerAsync(HttpContext context)
    {
        var body = (JsonObject)(await JsonNode.ParseAsync(context.Request.Body))!;
        var call = new ProviderCall(context.Request.Path, context.Request.QueryString.Value ?? "", body, context.Request.Headers.Authorization.FirstOrDefault(),
            context.Request.Headers["api-key"].FirstOrDefault())
        {
            Anthropic = (context.Request.Headers["x-api-key"].FirstOrDefault(), context.Request.Headers["anthropic-version"].FirstOrDefault()),
            AnthropicBeta = context.Request.Headers["anthropic-beta"].FirstOrDefault(),
        };
        Calls.Enqueue(call);
        context.RequestAborted.Register(() => call.Aborted.TrySetResult());
        var model = body["model"]!.GetValue<string>();

        if (model.Contains("rate-429", StringComparison.Ordinal))
        {
            context.Response.Headers.RetryAfter = "30";
            await ErrorAsync(context, 429, "Rate limit reached for requests", "rate_limit_exceeded");
            return;
        }
        if (model.Contains("fail-500", StringComparison.Ordinal))
        {
            await ErrorAsync(context, 500, $"The server had an error. Your key {call.Authorization} was fine.", null);
            return;
        }
        if (model.Contains("slow", StringComparison.Ordinal)) await Task.Delay(1500, context.RequestAborted);

        if (context.Request.Path.Value!.EndsWith("/v1/messages", StringComparison.Ordinal))
        {
            await AnthropicAsync(context, call, body, model);
            return;
        }
        if (context.Request.Path.Value!.EndsWith("/embeddings", StringComparison.Ordinal))
        {
            await context.Response.WriteAsJsonAsync(new
            {
                @object = "list",
                data = new[] { new { @object = "embedding", index = 0, embedding = new[] { 0.25f, -0.5f, 0.75f } } },
                model = model + "-served",
                usage = new { prompt_tokens = 5, total_tokens = 5 },
            });
            return;
        }

        var stream = body["stream"]?.GetValue<bool>() == true;
        if (!stream)
        {
            await context.Response.WriteAsJsonAsync(Completion(model, body));
            return;
        }

        context.Response.ContentType = "text/event-stream";
        var includeUsage = body["stream_options"]?["include_usage"]?.GetValue<bool>() == true && !model.Contains("nousage", StringComparison.Ordinal);
        var delay = model.Contains("drip", StringComparison.Ordinal) ? 100 : 0;
        var id = $"chatcmpl-{Guid.NewGuid():N}";
        var created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        async Task SendAsync(object chunk)
        {
            await context.Response.WriteAsync("data: " + JsonSerializer.Serialize(chunk) + "\n\n", context.RequestAborted);
            await context.Response.Body.FlushAsync(context.RequestAborted);
            call.ChunkSentAt.Enqueue(Stopwatch.GetTimestamp());
        }
        object Chunk(object delta, string? finish) => new
        {
            id,
            @object = "chat.completion.chunk",
            created,
            model = model + "-served",
            choices = new[] { new { index = 0, delta, finish_reason = finish } },
        };

        await SendAsync(Chunk(new { role = "assistant", content = "" }, null));
        for (var i = 0; i < Words.Length; i++)
        {
            if (model.Contains("drop", StringComparison.Ordinal) && i == 2)
            {
                await Task.Delay(200); // a reset right after the chunks could discard them unread on the gateway's side
                context.Abort();
                return;
            }
            if (model.Contains("hang", StringComparison.Ordinal) && i == 1)
            {
                await Task.Delay(TimeSpan.FromSeconds(30), context.RequestAborted);
            }
            if (delay > 0) await Task.Delay(delay, context.RequestAborted);
            await SendAsync(Chunk(new { content = Words[i] }, null));
        }
        await SendAsync(Chunk(new { }, "stop"));
        if (includeUsage)
        {
            await SendAsync(new
            {
                id,
                @object = "chat.completion.chunk",
                created,
                model = model + "-served",
                choices = Array.Empty<object>(),
                usage = Usage(),
            });
        }
        await context.Response.WriteAsync("data: [DONE]\n\n", context.RequestAborted);
    }

    /// <summary>Anthropic's Messages API: a message, or its stream of typed events (input tokens exclude the 2 read from cache).</summary>
    private static async Task AnthropicAsync(HttpContext context, ProviderCall call, JsonObject body, string model)
    {
        var said = Said(body["messages"]!.AsArray().Last()!["content"]);
        var id = $"msg_{Guid.NewGuid():N}";
        var tool = model.Contains("tool", StringComparison.Ordinal);
        var stopReason = tool ? "tool_use" : model.Contains("long", StringComparison.Ordinal) ? "max_tokens" : "end_turn";
        if (body["stream"]?.GetValue<bool>() != true)
        {
            var content = new List<object> { new { type = "text", text = tool ? "Let me look." : "echo: " + said } };
            if (tool) content.Add(new { type = "tool_use", id = "toolu_1", name = "get_weather", input = new { city = "Paris" } });
            await context.Response.WriteAsJsonAsync(new
            {
                id,
                type = "message",
                role = "assistant",
                model = model + "-served",
                content,
                stop_reason = stopReason,
                stop_sequence = (string?)null,
                usage = new { input_tokens = PromptTokens - CachedTokens, output_tokens = CompletionTokens, cache_read_input_tokens = CachedTokens },
            });
            return;
        }
        context.Response.ContentType = "text/event-stream";
        var drip = model.Contains("drip", StringComparison.Ordinal);
        async Task SendAsync(string type, object data)
        {
            await context.Response.WriteAsync($"event: {type}\ndata: {JsonSerializer.Serialize(data)}\n\n", context.RequestAborted);
            await context.Response.Body.FlushAsync(context.RequestAborted);
            call.ChunkSentAt.Enqueue(Stopwatch.GetTimestamp());
        }
        await SendAsync("message_start", new
        {
            type = "message_start",
            message = new
            {
                id,
                type = "message",
                role = "assistant",
                model = model + "-served",
                content = Array.Empty<object>(),
                stop_reason = (string?)null,
                usage = new { input_tokens = PromptTokens - CachedTokens, output_tokens = 1, cache_read_input_tokens = CachedTokens },
            },
        });
        await SendAsync("content_block_start", new { type = "content_block_start", index = 0, content_block = new { type = "text", text = "" } });
        await SendAsync("ping", new { type = "ping" });
        foreach (var word in Words)
        {
            if (drip) await Task.Delay(100, context.RequestAborted);
            await SendAsync("content_block_delta", new { type = "content_block_delta", index = 0, delta = new { type = "text_delta", text = word } });
        }
        await SendAsync("content_block_stop", new { type = "content_block_stop", index = 0 });
        if (tool)
        {
            await SendAsync("content_block_start", new { type = "content_block_start", index = 1, content_block = new { type = "tool_use", id = "toolu_1", name = "get_weather", input = new { } } });
            foreach (var piece in new[] { "{\"city\": ", "\"Par", "is\"}" })
            {
                await SendAsync("content_block_delta", new { type = "content_block_delta", index = 1, delta = new { type = "input_json_delta", partial_json = piece } });
            }
            await SendAsync("content_block_stop", new { type = "content_block_stop", index = 1 });
        }
        await SendAsync("message_delta", new
        {
            type = "message_delta",
            delta = new { stop_reason = stopReason, stop_sequence = (string?)null },
            usage = new { output_tokens = CompletionTokens },
        });
        await SendAsync("message_stop", new { type = "message_stop" });
    }

    /// <summary>What a Messages API turn said last: its text, or the last block's text or tool result.</summary>
    private static string Said(JsonNode? content) => content switch
    {
        JsonArray blocks when blocks.Last() is JsonObject block => block["type"]?.GetValue<string>() switch
        {
            "tool_result" => "result " + Said(block["content"]),
            "text" => block["text"]!.GetValue<string>(),
            var other => other ?? "",
        },
        JsonValue text => text.GetValue<string>(),
        _ => "",
    };

    private static object Usage() => new
    {
        prompt_tokens = PromptTokens,
        completion_tokens = CompletionTokens,
        total_tokens = PromptTokens + CompletionTokens,
        prompt_tokens_details = new { cached_tokens = CachedTokens },
    };

    private static object Completion(string model, JsonObject body)
    {
        var last = body["messages"]!.AsArray().Last()!;
        var said = last["content"]?.ToString() ?? "";
        object message = model.Contains("tool", StringComparison.Ordinal)
            ? new
            {
                role = "assistant",
                content = (string?)null,
                tool_calls = new[]
                {
                    new { id = "call_1", type = "function", function = new { name = "get_weather", arguments = "{\"city\":\"Paris\"}" } },
                },
            }
            : new { role = "assistant", content = "echo: " + said };
        return new
        {
            id = $"chatcmpl-{Guid.NewGuid():N}",
            @object = "chat.completion",
            created = DateTimeOffset.UtcNow.ToUnixTimeSeconds(),
            model = model + "-served",
            choices = new[] { new { index = 0, message, finish_reason = model.Contains("tool", StringComparison.Ordinal) ? "tool_calls" : "stop" } },
            usage = Usage(),
        };
    }

    private static async Task ErrorAsync(HttpContext context, int status, string message, string? code)
    {
        context.Response.StatusCode = status;
        await context.Response.WriteAsJsonAsync(new { error = new { message, type = "server_error", param = (string?)null, code } });
    }

    public ValueTask DisposeAsync() => _server.DisposeAsync();
}
