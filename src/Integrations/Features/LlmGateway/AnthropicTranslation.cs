using System.Text.Json;
using System.Text.Json.Nodes;

namespace Integrations.Features.LlmGateway;

/// <summary>
/// OpenAI chat completions spoken to an <c>anthropic</c> integration: the request translated to Anthropic's Messages API
/// (system, text, images by URL or data URL, tool definitions, tool calls and tool results, stop sequences, the tool
/// choice) and the answer translated back (text, tool calls, stop reason, usage), a whole message or its stream of typed
/// events. Fields the Messages API has no counterpart for (<c>n</c>, penalties, <c>logprobs</c>, <c>response_format</c>,
/// <c>seed</c>, ...) are left out; fields OpenAI does not define either pass untouched (<c>top_k</c>, <c>thinking</c>).
/// </summary>
public static class AnthropicTranslation
{
    /// <summary>Anthropic requires <c>max_tokens</c>; OpenAI clients often leave it out.</summary>
    public const int DefaultMaxTokens = 4096;

    /// <summary>OpenAI fields that are translated, or have no counterpart: none of them is sent as it is.</summary>
    private static readonly HashSet<string> OpenAiFields =
    [
        "model", "messages", "max_tokens", "max_completion_tokens", "stop", "stream", "stream_options", "tools", "tool_choice",
        "parallel_tool_calls", "user", "n", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs",
        "response_format", "seed", "store", "metadata", "reasoning_effort", "modalities", "prediction", "audio", "service_tier",
        "functions", "function_call", "web_search_options",
    ];

    /// <summary>A chat completion request that cannot be said in the Messages API (a message or part it has no form for).</summary>
    public sealed class UntranslatableException(string message) : Exception(message);

    /// <summary>The Messages API request for <paramref name="chat"/>, asking for <paramref name="model"/>.</summary>
    public static JsonObject ToMessagesRequest(JsonObject chat, string model)
    {
        var request = new JsonObject { ["model"] = model };
        var system = new List<string>();
        var messages = new JsonArray();
        foreach (var node in chat["messages"] as JsonArray ?? [])
        {
            if (node is not JsonObject message) throw new UntranslatableException("Each message must be an object.");
            var role = Text(message["role"]);
            switch (role)
            {
                case "system" or "developer":
                    system.Add(PlainText(message["content"], role));
                    break;
                case "user":
                    Append(messages, "user", UserBlocks(message["content"]));
                    break;
                case "assistant":
                    Append(messages, "assistant", AssistantBlocks(message));
                    break;
                case "tool":
                    Append(messages, "user", [new JsonObject
                    {
                        ["type"] = "tool_result",
                        ["tool_use_id"] = Text(message["tool_call_id"]) ?? throw new UntranslatableException("A tool message needs its tool_call_id."),
                        ["content"] = message["content"] is JsonArray parts ? TextBlocks(parts, "tool") : JsonValue.Create(PlainText(message["content"], "tool")),
                    }]);
                    break;
                default:
                    throw new UntranslatableException($"Messages with the role '{role}' cannot be sent to an anthropic integration.");
            }
        }
        if (system.Count > 0) request["system"] = string.Join("\n\n", system);
        request["messages"] = messages;
        request["max_tokens"] = (chat["max_completion_tokens"] ?? chat["max_tokens"])?.DeepClone() ?? DefaultMaxTokens;

        switch (chat["stop"])
        {
            case JsonArray stops:
                request["stop_sequences"] = stops.DeepClone();
                break;
            case JsonValue stop when stop.TryGetValue<string>(out var single):
                request["stop_sequences"] = new JsonArray(single);
                break;
        }
        if (chat["tools"] is JsonArray tools) request["tools"] = ToolDefinitions(tools);
        var toolChoice = ToolChoice(chat["tool_choice"]);
        if (chat["parallel_tool_calls"] is JsonValue parallel && parallel.TryGetValue<bool>(out var allowed) && !allowed && chat["tools"] is not null)
        {
            toolChoice ??= new JsonObject { ["type"] = "auto" };
            toolChoice["disable_parallel_tool_use"] = true;
        }
        if (toolChoice is not null) request["tool_choice"] = toolChoice;
        if (Text(chat["user"]) is { } user) request["metadata"] = new JsonObject { ["user_id"] = user };
        if (chat["stream"] is JsonValue stream) request["stream"] = stream.DeepClone();

        foreach (var (name, value) in chat)
        {
            if (!OpenAiFields.Contains(name) && !request.ContainsKey(name)) request[name] = value?.DeepClone();
        }
        return request;
    }

    /// <summary>An Anthropic message (the whole answer) as a chat completion.</summary>
    public static JsonObject ToChatCompletion(JsonElement message)
    {
        var text = new List<string>();
        var toolCalls = new JsonArray();
        if (message.TryGetProperty("content", out var content) && content.ValueKind == JsonValueKind.Array)
        {
            foreach (var block in content.EnumerateArray())
            {
                switch (Type(block))
                {
                    case "text" when block.TryGetProperty("text", out var t):
                        text.Add(t.GetString() ?? "");
                        break;
                    case "tool_use":
                        toolCalls.Add(ToolCall(block, arguments: block.TryGetProperty("input", out var input) ? input.GetRawText() : "{}"));
                        break;
                }
            }
        }
        var answer = new JsonObject { ["role"] = "assistant", ["content"] = text.Count > 0 ? string.Concat(text) : null, ["refusal"] = null };
        if (toolCalls.Count > 0) answer["tool_calls"] = toolCalls;
        var completion = new JsonObject
        {
            ["id"] = String(message, "id"),
            ["object"] = "chat.completion",
            ["created"] = DateTimeOffset.UtcNow.ToUnixTimeSeconds(),
            ["model"] = String(message, "model"),
            ["choices"] = new JsonArray(new JsonObject
            {
                ["index"] = 0,
                ["message"] = answer,
                ["logprobs"] = null,
                ["finish_reason"] = FinishReason(message.TryGetProperty("stop_reason", out var stop) ? stop.GetString() : null),
            }),
        };
        if (message.TryGetProperty("usage", out var usage) && usage.ValueKind == JsonValueKind.Object)
        {
            var tokens = new Tokens();
            tokens.Read(usage);
            completion["usage"] = tokens.ToOpenAi();
        }
        return completion;
    }

    /// <summary>Anthropic's stop reason as OpenAI's finish reason.</summary>
    public static string? FinishReason(string? stopReason) => stopReason switch
    {
        null => null,
        "max_tokens" or "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop", // end_turn, stop_sequence, pause_turn
    };

    /// <summary>
    /// Anthropic's token counts: <c>input_tokens</c> excludes what was read from or written to the prompt cache, which
    /// OpenAI counts in <c>prompt_tokens</c> (cache reads again as <c>cached_tokens</c>).
    /// </summary>
    public sealed class Tokens
    {
        private long? _input;
        private long _cacheRead;
        private long _cacheWrite;

        public long? Prompt => _input is { } input ? input + _cacheRead + _cacheWrite : null;
        public long Cached => _cacheRead;
        public long? Completion { get; private set; }

        /// <summary>Reads a usage object; a stream's <c>message_delta</c> repeats or updates only some counts.</summary>
        public void Read(JsonElement usage)
        {
            if (usage.ValueKind != JsonValueKind.Object) return;
            if (Long(usage, "input_tokens") is { } input) _input = input;
            if (Long(usage, "cache_read_input_tokens") is { } read) _cacheRead = read;
            if (Long(usage, "cache_creation_input_tokens") is { } write) _cacheWrite = write;
            if (Long(usage, "output_tokens") is { } output) Completion = output;
        }

        public JsonObject ToOpenAi() => new()
        {
            ["prompt_tokens"] = Prompt ?? 0,
            ["completion_tokens"] = Completion ?? 0,
            ["total_tokens"] = (Prompt ?? 0) + (Completion ?? 0),
            ["prompt_tokens_details"] = new JsonObject { ["cached_tokens"] = _cacheRead },
        };

        private static long? Long(JsonElement usage, string name) =>
            usage.TryGetProperty(name, out var value) && value.TryGetInt64(out var n) ? n : null;
    }

    /// <summary>
    /// One Anthropic stream as OpenAI <c>chat.completion.chunk</c>s: each event in, the chunks it makes out (often none:
    /// pings, block ends). After <c>message_stop</c> (<see cref="Done"/>) the caller ends the stream with <c>[DONE]</c>.
    /// </summary>
    public sealed class StreamTranslator(bool includeUsage)
    {
        private readonly Dictionary<int, int> _toolCallOf = [];
        private readonly Tokens _tokens = new();
        private readonly long _created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        private string? _id;
        private string? _model;

        public bool Done { get; private set; }

        public IEnumerable<JsonObject> Translate(JsonElement data)
        {
            switch (Type(data))
            {
                case "message_start" when data.TryGetProperty("message", out var message):
                    _id = String(message, "id");
                    _model = String(message, "model");
                    if (message.TryGetProperty("usage", out var started)) _tokens.Read(started);
                    yield return Chunk(new JsonObject { ["role"] = "assistant", ["content"] = "" });
                    break;
                case "content_block_start" when data.TryGetProperty("content_block", out var block):
                    if (Type(block) == "tool_use")
                    {
                        var index = _toolCallOf.Count;
                        _toolCallOf[Index(data)] = index;
                        yield return Chunk(new JsonObject { ["tool_calls"] = new JsonArray(ToolCall(block, arguments: "", index)) });
                    }
                    else if (Type(block) == "text" && String(block, "text") is { Length: > 0 } opening)
                    {
                        yield return Chunk(new JsonObject { ["content"] = opening });
                    }
                    break;
                case "content_block_delta" when data.TryGetProperty("delta", out var delta):
                    if (Type(delta) == "text_delta")
                    {
                        yield return Chunk(new JsonObject { ["content"] = String(delta, "text") });
                    }
                    else if (Type(delta) == "input_json_delta" && _toolCallOf.TryGetValue(Index(data), out var toolCall))
                    {
                        yield return Chunk(new JsonObject
                        {
                            ["tool_calls"] = new JsonArray(new JsonObject
                            {
                                ["index"] = toolCall,
                                ["function"] = new JsonObject { ["arguments"] = String(delta, "partial_json") },
                            }),
                        });
                    }
                    break;
                case "message_delta":
                    if (data.TryGetProperty("usage", out var usage)) _tokens.Read(usage);
                    var stop = data.TryGetProperty("delta", out var change) && change.TryGetProperty("stop_reason", out var reason) ? reason.GetString() : null;
                    yield return Chunk([], FinishReason(stop));
                    break;
                case "message_stop":
                    Done = true;
                    if (includeUsage)
                    {
                        var last = Chunk(null, null);
                        last["usage"] = _tokens.ToOpenAi();
                        yield return last;
                    }
                    break;
            }
        }

        private JsonObject Chunk(JsonObject? delta, string? finishReason = null) => new()
        {
            ["id"] = _id,
            ["object"] = "chat.completion.chunk",
            ["created"] = _created,
            ["model"] = _model,
            ["choices"] = delta is null
                ? new JsonArray()
                : new JsonArray(new JsonObject { ["index"] = 0, ["delta"] = delta, ["logprobs"] = null, ["finish_reason"] = finishReason }),
        };

        private static int Index(JsonElement data) => data.TryGetProperty("index", out var index) && index.TryGetInt32(out var i) ? i : 0;
    }

    private static JsonObject ToolCall(JsonElement block, string arguments, int? index = null)
    {
        var call = new JsonObject();
        if (index is { } i) call["index"] = i;
        call["id"] = String(block, "id");
        call["type"] = "function";
        call["function"] = new JsonObject { ["name"] = String(block, "name"), ["arguments"] = arguments };
        return call;
    }

    private static void Append(JsonArray messages, string role, List<JsonNode> blocks)
    {
        if (blocks.Count == 0) return;
        // Anthropic alternates roles: the results of parallel tool calls, and a user turn after them, are one user message.
        if (messages.Count > 0 && messages[^1] is JsonObject last && Text(last["role"]) == role && last["content"] is JsonArray content)
        {
            foreach (var block in blocks) content.Add(block);
            return;
        }
        messages.Add(new JsonObject { ["role"] = role, ["content"] = new JsonArray([.. blocks]) });
    }

    private static List<JsonNode> UserBlocks(JsonNode? content)
    {
        if (content is not JsonArray parts) return [TextBlock(PlainText(content, "user"))];
        var blocks = new List<JsonNode>();
        foreach (var part in parts)
        {
            switch (Text(part?["type"]))
            {
                case "text":
                    blocks.Add(TextBlock(Text(part!["text"]) ?? ""));
                    break;
                case "image_url":
                    var url = Text(part!["image_url"] is JsonObject image ? image["url"] : part["image_url"])
                        ?? throw new UntranslatableException("An image_url part needs its url.");
                    blocks.Add(new JsonObject { ["type"] = "image", ["source"] = ImageSource(url) });
                    break;
                default:
                    throw new UntranslatableException($"Content parts of type '{Text(part?["type"])}' cannot be sent to an anthropic integration (text and image_url can).");
            }
        }
        return blocks;
    }

    /// <summary>An image by URL stays a URL for the provider to fetch; a data URL becomes Anthropic's base64 source.</summary>
    private static JsonObject ImageSource(string url)
    {
        const string Base64 = ";base64,";
        if (!url.StartsWith("data:", StringComparison.OrdinalIgnoreCase)) return new JsonObject { ["type"] = "url", ["url"] = url };
        var comma = url.IndexOf(Base64, StringComparison.OrdinalIgnoreCase);
        if (comma < 0) throw new UntranslatableException("An image data URL must be base64 encoded (data:<media type>;base64,<data>).");
        return new JsonObject { ["type"] = "base64", ["media_type"] = url[5..comma], ["data"] = url[(comma + Base64.Length)..] };
    }

    private static List<JsonNode> AssistantBlocks(JsonObject message)
    {
        var blocks = new List<JsonNode>();
        var text = message["content"] switch
        {
            null => "",
            JsonArray parts => string.Concat(parts.Select(p => Text(p?["text"]) ?? Text(p?["refusal"]) ?? "")),
            var content => Text(content) ?? "",
        };
        if (text.Length > 0) blocks.Add(TextBlock(text));
        foreach (var node in message["tool_calls"] as JsonArray ?? [])
        {
            var function = node?["function"] as JsonObject ?? throw new UntranslatableException("A tool call needs its function.");
            var arguments = Text(function["arguments"]);
            JsonNode input;
            try
            {
                input = string.IsNullOrWhiteSpace(arguments) ? new JsonObject() : JsonNode.Parse(arguments) ?? new JsonObject();
            }
            catch (JsonException)
            {
                throw new UntranslatableException($"The arguments of tool call '{Text(node!["id"])}' are not JSON.");
            }
            blocks.Add(new JsonObject { ["type"] = "tool_use", ["id"] = Text(node!["id"]), ["name"] = Text(function["name"]), ["input"] = input });
        }
        return blocks;
    }

    private static JsonArray ToolDefinitions(JsonArray tools)
    {
        var definitions = new JsonArray();
        foreach (var tool in tools)
        {
            if (Text(tool?["type"]) != "function" || tool!["function"] is not JsonObject function)
            {
                throw new UntranslatableException($"Tools of type '{Text(tool?["type"])}' cannot be sent to an anthropic integration (function tools can).");
            }
            var definition = new JsonObject { ["name"] = function["name"]?.DeepClone() };
            if (function["description"] is { } description) definition["description"] = description.DeepClone();
            definition["input_schema"] = function["parameters"]?.DeepClone() ?? new JsonObject { ["type"] = "object", ["properties"] = new JsonObject() };
            definitions.Add(definition);
        }
        return definitions;
    }

    private static JsonObject? ToolChoice(JsonNode? choice) => choice switch
    {
        null => null,
        JsonValue value => Text(value) switch
        {
            "none" => new JsonObject { ["type"] = "none" },
            "required" => new JsonObject { ["type"] = "any" },
            _ => new JsonObject { ["type"] = "auto" },
        },
        JsonObject named when Text(named["function"]?["name"]) is { } name => new JsonObject { ["type"] = "tool", ["name"] = name },
        _ => throw new UntranslatableException("tool_choice must be none, auto, required or a function by name."),
    };

    private static JsonArray TextBlocks(JsonArray parts, string role) =>
        new([.. parts.Select(p => Text(p?["type"]) == "text"
            ? TextBlock(Text(p!["text"]) ?? "")
            : throw new UntranslatableException($"A {role} message's content parts must be text."))]);

    private static JsonObject TextBlock(string text) => new() { ["type"] = "text", ["text"] = text };

    /// <summary>Content as text: a string, or text parts joined.</summary>
    private static string PlainText(JsonNode? content, string role) => content switch
    {
        null => "",
        JsonArray parts => string.Concat(parts.Select(p => Text(p?["type"]) == "text"
            ? Text(p!["text"]) ?? ""
            : throw new UntranslatableException($"A {role} message's content parts must be text."))),
        _ => Text(content) ?? throw new UntranslatableException($"A {role} message's content must be text."),
    };

    private static string? Text(JsonNode? node) => node is JsonValue value && value.TryGetValue<string>(out var text) ? text : null;

    private static string? Type(JsonElement element) => String(element, "type");

    private static string? String(JsonElement element, string name) =>
        element.ValueKind == JsonValueKind.Object && element.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;
}
