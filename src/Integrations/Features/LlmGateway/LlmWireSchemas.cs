using System.Text.Json;
using System.Text.Json.Serialization;
using Integrations.Common;

namespace Integrations.Features.LlmGateway;

// The bodies of /v1 as the OpenAPI document describes them: the common fields of OpenAI's chat completions and
// embeddings and of Anthropic's Messages API, so a generated client knows their shape. The gateway itself never binds
// them: it reads the JSON as it came and forwards it, unknown fields included, which is why no schema here forbids
// other properties. A field that is one of several shapes (content as text or parts, stop as a string or a list) is
// any JSON here.

/// <summary>What every /v1 schema's fixed values are.</summary>
public static class LlmWire
{
    public static readonly string[] ChatRoles = ["system", "developer", "user", "assistant", "tool"];
    public static readonly string[] FinishReasons = ["stop", "length", "tool_calls", "content_filter", "function_call"];
    public static readonly string[] AnthropicRoles = ["user", "assistant"];
}

/// <summary>POST /v1/chat/completions: <c>model</c> is <c>&lt;integration&gt;/&lt;model&gt;</c> or a model an integration allows.</summary>
public sealed record ChatCompletionRequest(
    string Model,
    IReadOnlyList<ChatCompletionMessage> Messages,
    bool? Stream = null,
    ChatCompletionStreamOptions? StreamOptions = null,
    int? MaxTokens = null,
    int? MaxCompletionTokens = null,
    double? Temperature = null,
    double? TopP = null,
    int? N = null,
    JsonElement? Stop = null,
    IReadOnlyList<ChatCompletionTool>? Tools = null,
    JsonElement? ToolChoice = null,
    bool? ParallelToolCalls = null,
    JsonElement? ResponseFormat = null,
    long? Seed = null,
    string? User = null);

public sealed record ChatCompletionStreamOptions(bool? IncludeUsage = null);

/// <summary>A message: <c>content</c> is text or a list of parts (<c>text</c>, <c>image_url</c>); an assistant's may carry <c>tool_calls</c>, a tool's answers one by <c>tool_call_id</c>.</summary>
public sealed record ChatCompletionMessage(
    [property: OneOf(typeof(LlmWire), nameof(LlmWire.ChatRoles))] string Role,
    JsonElement? Content = null,
    string? Name = null,
    IReadOnlyList<ChatCompletionToolCall>? ToolCalls = null,
    string? ToolCallId = null,
    string? Refusal = null);

public sealed record ChatCompletionTool(string Type, ChatCompletionFunction Function);

/// <summary>A function the model may call: <c>parameters</c> is its JSON Schema.</summary>
public sealed record ChatCompletionFunction(string Name, string? Description = null, JsonElement? Parameters = null);

/// <summary>A call the model asks for: <c>arguments</c> is a JSON text.</summary>
public sealed record ChatCompletionToolCall(string Id, string Type, ChatCompletionFunctionCall Function);

public sealed record ChatCompletionFunctionCall(string Name, string Arguments);

/// <summary>A chat completion (a stream answers <c>chat.completion.chunk</c> events of the same fields, <c>delta</c> for <c>message</c>).</summary>
public sealed record ChatCompletion(
    string Id, [property: JsonPropertyName("object")] string Kind, long Created, string Model, IReadOnlyList<ChatCompletionChoice> Choices, ChatCompletionUsage? Usage = null);

public sealed record ChatCompletionChoice(
    int Index, ChatCompletionMessage Message, [property: OneOf(typeof(LlmWire), nameof(LlmWire.FinishReasons))] string? FinishReason);

public sealed record ChatCompletionUsage(
    long PromptTokens, long CompletionTokens, long TotalTokens, ChatCompletionPromptTokensDetails? PromptTokensDetails = null);

public sealed record ChatCompletionPromptTokensDetails(long? CachedTokens = null);

/// <summary>POST /v1/embeddings: <c>input</c> is a text or a list of texts (or of token lists).</summary>
public sealed record EmbeddingsRequest(string Model, JsonElement Input, string? EncodingFormat = null, int? Dimensions = null, string? User = null);

public sealed record EmbeddingList([property: JsonPropertyName("object")] string Kind, IReadOnlyList<Embedding> Data, string Model, EmbeddingUsage? Usage = null);

/// <summary>One input's vector: numbers, or base64 with <c>encoding_format: base64</c>.</summary>
public sealed record Embedding([property: JsonPropertyName("object")] string Kind, int Index, [property: JsonPropertyName("embedding")] JsonElement Vector);

public sealed record EmbeddingUsage(long PromptTokens, long TotalTokens);

/// <summary>POST /v1/messages (Anthropic's Messages API): <c>system</c> is text or text blocks, <c>max_tokens</c> is required.</summary>
public sealed record AnthropicMessagesRequest(
    string Model,
    int MaxTokens,
    IReadOnlyList<AnthropicMessageParam> Messages,
    JsonElement? System = null,
    bool? Stream = null,
    double? Temperature = null,
    double? TopP = null,
    int? TopK = null,
    IReadOnlyList<string>? StopSequences = null,
    IReadOnlyList<AnthropicTool>? Tools = null,
    JsonElement? ToolChoice = null,
    AnthropicMetadata? Metadata = null,
    JsonElement? Thinking = null);

/// <summary>A turn: <c>content</c> is text or blocks (<c>text</c>, <c>image</c>, <c>tool_use</c>, <c>tool_result</c>, ...).</summary>
public sealed record AnthropicMessageParam([property: OneOf(typeof(LlmWire), nameof(LlmWire.AnthropicRoles))] string Role, JsonElement Content);

public sealed record AnthropicTool(string Name, JsonElement InputSchema, string? Description = null);

public sealed record AnthropicMetadata(string? UserId = null);

/// <summary>Anthropic's answer (a stream answers its typed events: <c>message_start</c>, <c>content_block_delta</c>, ... <c>message_stop</c>).</summary>
public sealed record AnthropicMessage(
    string Id, string Type, string Role, string Model, IReadOnlyList<AnthropicContentBlock> Content, string? StopReason, string? StopSequence,
    AnthropicUsage Usage);

/// <summary>A block of an answer: <c>text</c> (with <c>text</c>) or <c>tool_use</c> (with <c>id</c>, <c>name</c>, <c>input</c>).</summary>
public sealed record AnthropicContentBlock(string Type, string? Text = null, string? Id = null, string? Name = null, JsonElement? Input = null);

public sealed record AnthropicUsage(long InputTokens, long OutputTokens, long? CacheReadInputTokens = null, long? CacheCreationInputTokens = null);
