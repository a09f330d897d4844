using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using FluentValidation;
using Integrations.Common;
using Integrations.Infrastructure.Http;
using Integrations.Infrastructure.Network;
using Integrations.Pipeline.Governance;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Polly.CircuitBreaker;

namespace Integrations.Features.LlmGateway;

/// <summary>
/// llm.invoke: an OpenAI-style request (<c>POST /v1/chat/completions</c>, <c>POST /v1/embeddings</c>) forwarded to the
/// integration its model routes to, as a governed call (<see cref="LlmCall"/> is its kind: routing, rules, usage row).
/// The body goes to the provider as the client sent it, unknown fields untouched, with only <c>model</c> rewritten to
/// the provider's name for it (and, when streaming, <c>stream_options.include_usage</c> asked for so the usage row has
/// the provider's counts). A streamed answer is forwarded event by event as it arrives, never buffered; the call's
/// outcome, its usage and its cost are known, and recorded, when the stream ends — or when the client goes away, which
/// cancels the request to the provider. No prompt or completion text is kept.
/// </summary>
public static class InvokeLlm
{
    public const string ChatCompletions = "chat.completions";
    public const string Embeddings = "embeddings";

    /// <summary>Anthropic's Messages API (<c>POST /v1/messages</c>), passed through natively to <c>anthropic</c> integrations.</summary>
    public const string Messages = "messages";

    /// <summary>Pins the integration (by name or id) a model is routed to.</summary>
    public const string IntegrationHeader = "X-Integration";

    /// <summary>The agent run a request belongs to, kept on its usage row.</summary>
    public const string RunIdHeader = "X-Run-Id";

    /// <summary>Names the governed call of every answer, so its audit events and usage row can be found.</summary>
    public const string InvocationIdHeader = "X-Invocation-Id";

    public sealed record Command(string Endpoint, JsonObject Body, string? Integration = null, string? RunId = null)
        : IOperation<Response>, IGovernedCall
    {
        public static string Operation => "llm.invoke";
        public static string Scope => Scopes.LlmInvoke;

        public string Model => Fallback?.Model ?? (Body["model"] is JsonValue value && value.TryGetValue<string>(out var model) ? model : "");

        public bool Streaming => Endpoint != Embeddings && Body["stream"] is JsonValue value && value.TryGetValue<bool>(out var on) && on;

        /// <summary>The calling API key, whose own limits hold beside the integration's (set from the authenticated caller).</summary>
        [JsonIgnore]
        public Guid? ApiKeyId { get; init; }

        /// <summary>Where a streamed answer goes as it arrives; required when <see cref="Streaming"/>.</summary>
        [JsonIgnore]
        public EventStream? Stream { get; init; }

        /// <summary>Set when this request is a fallback of a call that failed (the stage's next call, not the client's).</summary>
        [JsonIgnore]
        public FallbackStep? Fallback { get; init; }

        /// <summary>The client's <c>anthropic-version</c> at <c>/v1/messages</c>, sent on instead of the gateway's own.</summary>
        public string? AnthropicVersion { get; init; }

        /// <summary>The client's <c>anthropic-beta</c> at <c>/v1/messages</c>, sent on as it is.</summary>
        public string? AnthropicBeta { get; init; }
    }

    /// <summary>
    /// A fallback call: the first call it falls back from, the model that call asked for, the model this one asks for
    /// (from <see cref="Command.Integration"/>, the fallback integration), and the fallbacks left after it.
    /// </summary>
    public sealed record FallbackStep(Guid Of, string FirstModel, string Model, IReadOnlyList<string> Remaining);

    /// <summary>A non-streamed answer's body is the provider's, as it came (<see cref="Body"/>); a streamed one has gone to the <see cref="EventStream"/>.</summary>
    public sealed record Response(
        Guid InvocationId,
        string? ServedModel,
        long PromptTokens,
        long CompletionTokens,
        long CachedTokens,
        bool TokensEstimated,
        decimal? CostCents,
        bool Streamed,
        [property: JsonIgnore] ReadOnlyMemory<byte> Body);

    /// <summary>The client's side of a streamed answer: server-sent events written and flushed one event at a time.</summary>
    public sealed class EventStream(HttpResponse response)
    {
        private static readonly byte[] NewLine = "\n"u8.ToArray();

        public bool Started => response.HasStarted;

        internal Task StartAsync(Guid invocationId, CancellationToken ct)
        {
            response.StatusCode = StatusCodes.Status200OK;
            response.ContentType = "text/event-stream; charset=utf-8";
            response.Headers.CacheControl = "no-cache";
            response.Headers["X-Accel-Buffering"] = "no"; // a proxy in front must not hold events back either
            response.Headers[InvocationIdHeader] = invocationId.ToString();
            return response.StartAsync(ct);
        }

        internal async Task WriteLineAsync(string line, CancellationToken ct)
        {
            await response.Body.WriteAsync(Encoding.UTF8.GetBytes(line), ct);
            await response.Body.WriteAsync(NewLine, ct);
        }

        internal Task FlushAsync(CancellationToken ct) => response.Body.FlushAsync(ct);

        /// <summary>A failure after the answer began cannot change its status: it is told as a last event in the route's error shape (OpenAI's, or Anthropic's <c>event: error</c>).</summary>
        internal async Task WriteErrorAsync(Error error, HttpContext context)
        {
            var anthropic = Problems.IsAnthropicSurface(context);
            var payload = JsonSerializer.Serialize(anthropic ? Problems.ToAnthropicError(error, context) : Problems.ToOpenAiError(error, context));
            if (anthropic) await WriteLineAsync("event: error", CancellationToken.None);
            await WriteLineAsync("data: " + payload, CancellationToken.None);
            await WriteLineAsync("", CancellationToken.None);
            await FlushAsync(CancellationToken.None);
        }
    }

    internal sealed class Validator : AbstractValidator<Command>
    {
        public Validator()
        {
            RuleFor(x => x.Endpoint).Must(e => e is ChatCompletions or Embeddings or Messages).WithMessage("Endpoint must be chat.completions, embeddings or messages.");
            RuleFor(x => x.Model).NotEmpty().WithMessage("'model' is required (a string: '<integration>/<model>' or a model an integration allows).")
                .MaximumLength(400).WithMessage("'model' may be at most 400 characters.").OverridePropertyName("model");
            // One model-level rule: an indexer in RuleFor is compiled again at every construction (ValidatorConstructionTests).
            RuleFor(x => x).Custom((x, context) =>
            {
                if (x.Endpoint != Embeddings && x.Body["messages"] is not JsonArray { Count: > 0 }) context.AddFailure("messages", "'messages' must be a non-empty array.");
                if (x.Endpoint == Embeddings && x.Body["input"] is null) context.AddFailure("input", "'input' is required.");
                if (x.Streaming && x.Stream is null) context.AddFailure("stream", "A streamed request needs a stream to write the answer to.");
            });
            RuleFor(x => x.Integration).MaximumLength(200);
            RuleFor(x => x.RunId).MaximumLength(200);
            RuleFor(x => x.AnthropicVersion).MaximumLength(100).Must(NoControlCharacters).WithMessage("anthropic-version may not contain control characters.");
            RuleFor(x => x.AnthropicBeta).MaximumLength(1000).Must(NoControlCharacters).WithMessage("anthropic-beta may not contain control characters.");
        }

        private static bool NoControlCharacters(string? value) => value is null || !value.Any(char.IsControl);
    }

    internal sealed class Handler(GovernedCallContext calls, LlmUpstream upstream) : IRequestHandler<Command, Result<Response>>
    {
        public async Task<Result<Response>> Handle(Command request, CancellationToken ct)
        {
            var call = calls.Current;
            var target = call.TargetAs<LlmCall.Target>();
            var usage = new UsageMeter(target, call, request);
            var clientAskedUsage = request.Body["stream_options"] is JsonObject options && options["include_usage"] is JsonValue v && v.TryGetValue<bool>(out var asked) && asked;
            // Chat completions to an anthropic integration are said in its Messages API, and its answer said back.
            var translated = target.Provider == "anthropic" && request.Endpoint == ChatCompletions;
            JsonObject body;
            if (translated)
            {
                try
                {
                    body = AnthropicTranslation.ToMessagesRequest(request.Body, target.UpstreamModel);
                }
                catch (AnthropicTranslation.UntranslatableException e)
                {
                    return usage.Fail(new Error("untranslatable_request", 400, "Request cannot be translated.",
                        $"The integration '{target.Name}' is an anthropic one and the request cannot be said in its Messages API: {e.Message}"));
                }
            }
            else
            {
                body = (JsonObject)request.Body.DeepClone();
                body["model"] = target.UpstreamModel;
                if (request.Streaming && request.Endpoint == ChatCompletions && !clientAskedUsage)
                {
                    var streamOptions = body["stream_options"] as JsonObject ?? [];
                    streamOptions["include_usage"] = true;
                    body["stream_options"] = streamOptions;
                }
            }
            var bytes = JsonSerializer.SerializeToUtf8Bytes(body);
            usage.PromptBytes = bytes.Length;

            LlmUpstream.Answer answer;
            try
            {
                var anthropicHeaders = request.Endpoint == Messages ? new LlmUpstream.AnthropicHeaders(request.AnthropicVersion, request.AnthropicBeta) : null;
                answer = await upstream.SendAsync(target, call.Credential?.Token, request.Endpoint, bytes, request.Streaming, ct, anthropicHeaders);
                // An OAuth access token the provider refused (401) is renewed once and the request sent once more.
                if (answer.Response.StatusCode == HttpStatusCode.Unauthorized && await call.RenewCredentialAsync(ct) is { } renewed)
                {
                    answer.Response.Dispose();
                    answer = await upstream.SendAsync(target, renewed.Token, request.Endpoint, bytes, request.Streaming, ct, anthropicHeaders);
                }
            }
            catch (HttpRequestException e) when (SsrfGuard.IsBlocked(e))
            {
                return usage.Fail(Error.SsrfBlocked($"The provider host of '{target.Name}' resolved to an address that is not allowed."));
            }
            catch (HttpRequestException e)
            {
                return usage.Fail(Error.UpstreamUnreachable($"Could not reach the provider of '{target.Name}': {e.HttpRequestError}."));
            }
            catch (TimeoutException e)
            {
                return usage.Fail(Error.UpstreamTimeout(e.Message));
            }
            catch (BrokenCircuitException e)
            {
                var retryAfter = e.RetryAfter ?? TimeSpan.FromSeconds(5);
                return usage.Fail(Error.UpstreamUnreachable(
                    $"The provider of '{target.Name}' failed most recent requests; it is not called for {retryAfter.TotalSeconds:0} s (circuit open).") with
                {
                    Extensions = new Dictionary<string, object?> { ["retry_after_seconds"] = (int)Math.Ceiling(retryAfter.TotalSeconds), ["circuit"] = "open" },
                });
            }

            using var response = answer.Response;
            usage.Attempts = answer.Attempts;
            usage.UpstreamStatus = (int)response.StatusCode;
            if (!response.IsSuccessStatusCode) return usage.Fail(await RefusalAsync(response, target, call.Credential?.Token, ct));

            return request.Streaming
                ? await ForwardStreamAsync(request, response, usage, clientAskedUsage, translated ? new AnthropicTranslation.StreamTranslator(clientAskedUsage) : null, ct)
                : await ReadAnswerAsync(response, usage, translated, ct);
        }

        private async Task<Result<Response>> ReadAnswerAsync(HttpResponseMessage response, UsageMeter usage, bool translated, CancellationToken ct)
        {
            byte[] body;
            try
            {
                using var idle = CancellationTokenSource.CreateLinkedTokenSource(ct);
                idle.CancelAfter(upstream.Settings.ResponseTimeout);
                if (response.Content.Headers.ContentLength > upstream.Settings.MaxResponseBytes) return usage.Fail(TooLarge());
                await using var stream = await response.Content.ReadAsStreamAsync(idle.Token);
                using var buffer = new MemoryStream();
                var chunk = new byte[16 * 1024];
                int read;
                while ((read = await stream.ReadAsync(chunk, idle.Token)) > 0)
                {
                    usage.FirstByte();
                    if (buffer.Length + read > upstream.Settings.MaxResponseBytes) return usage.Fail(TooLarge());
                    buffer.Write(chunk, 0, read);
                }
                body = buffer.ToArray();
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                return usage.Fail(Error.UpstreamTimeout($"The provider did not finish its answer within {upstream.Settings.ResponseTimeout.TotalSeconds:0.###} s."));
            }
            catch (Exception e) when (e is HttpRequestException or IOException)
            {
                return usage.Fail(Error.UpstreamError("The provider's answer ended before it was complete."));
            }

            try
            {
                using var document = JsonDocument.Parse(body);
                usage.Observe(document.RootElement);
                if (translated) body = JsonSerializer.SerializeToUtf8Bytes(AnthropicTranslation.ToChatCompletion(document.RootElement));
            }
            catch (JsonException)
            {
                return usage.Fail(Error.UpstreamError("The provider's answer is not JSON."));
            }
            return usage.Complete(body, streamed: false);
        }

        private async Task<Result<Response>> ForwardStreamAsync(
            Command request, HttpResponseMessage response, UsageMeter usage, bool clientAskedUsage, AnthropicTranslation.StreamTranslator? translator,
            CancellationToken ct)
        {
            var client = request.Stream!;
            using var idle = CancellationTokenSource.CreateLinkedTokenSource(ct);
            idle.CancelAfter(upstream.Settings.StreamIdleTimeout);
            var done = false;
            var skipping = false;
            try
            {
                await using var stream = await response.Content.ReadAsStreamAsync(idle.Token);
                using var reader = new StreamReader(stream, Encoding.UTF8);
                await client.StartAsync(usage.InvocationId, ct);
                while (await reader.ReadLineAsync(idle.Token) is { } line)
                {
                    idle.CancelAfter(upstream.Settings.StreamIdleTimeout);
                    if (translator is not null)
                    {
                        // Anthropic's events name their type in the data too: only data lines matter, each may make chunks.
                        if (!line.StartsWith("data:", StringComparison.Ordinal)) continue;
                        usage.ObserveChunk(line.AsSpan(5).Trim());
                        if (!await TranslateAsync(translator, line.AsMemory(5), client, ct)) continue;
                        await client.WriteLineAsync("data: [DONE]", ct);
                        await client.WriteLineAsync("", ct);
                        await client.FlushAsync(ct);
                        done = true;
                        continue;
                    }
                    if (line.Length == 0)
                    {
                        if (!skipping)
                        {
                            await client.WriteLineAsync(line, ct);
                            await client.FlushAsync(ct);
                        }
                        skipping = false;
                        continue;
                    }
                    if (line.StartsWith("data:", StringComparison.Ordinal))
                    {
                        var data = line.AsSpan(5).Trim();
                        if (data.SequenceEqual("[DONE]")) done = true;
                        else if (usage.ObserveChunk(data) && request.Endpoint == ChatCompletions && !clientAskedUsage) skipping = true; // the usage we asked for, not the client
                    }
                    if (!skipping) await client.WriteLineAsync(line, ct);
                }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                usage.Report(estimateMissing: true);
                throw;
            }
            catch (OperationCanceledException)
            {
                return usage.Fail(Error.UpstreamTimeout($"The provider sent nothing for {upstream.Settings.StreamIdleTimeout.TotalSeconds:0.###} s in the middle of its stream."));
            }
            catch (Exception e) when (e is HttpRequestException or IOException)
            {
                return usage.Fail(Error.UpstreamError("The provider's stream broke off before it finished."));
            }
            if (!done && !usage.Finished) return usage.Fail(Error.UpstreamError("The provider's stream ended before it finished."));
            if (!done && request.Endpoint == ChatCompletions)
            {
                await client.WriteLineAsync("data: [DONE]", ct);
                await client.WriteLineAsync("", ct);
                await client.FlushAsync(ct);
            }
            return usage.Complete(ReadOnlyMemory<byte>.Empty, streamed: true);
        }

        /// <summary>Writes the chunks one Anthropic event makes; true once the message has ended.</summary>
        private static async Task<bool> TranslateAsync(AnthropicTranslation.StreamTranslator translator, ReadOnlyMemory<char> data, EventStream client, CancellationToken ct)
        {
            JsonDocument document;
            try
            {
                document = JsonDocument.Parse(data);
            }
            catch (JsonException)
            {
                return false;
            }
            using (document)
            {
                var wrote = false;
                foreach (var chunk in translator.Translate(document.RootElement))
                {
                    await client.WriteLineAsync("data: " + chunk.ToJsonString(), ct);
                    await client.WriteLineAsync("", ct);
                    wrote = true;
                }
                if (wrote) await client.FlushAsync(ct);
            }
            return translator.Done;
        }

        private Error TooLarge() =>
            Error.UpstreamError($"The provider's answer is larger than {upstream.Settings.MaxResponseBytes} bytes (Integrations:Llm:MaxResponseBytes).");

        /// <summary>
        /// The provider's refusal as the gateway answers it: its own message (the key removed, should it echo it), and a
        /// status that says whose fault it was — the tenant's key (502 <c>upstream_auth_failed</c>), the provider's limits
        /// (429 <c>upstream_rate_limited</c> with its <c>Retry-After</c>), the provider (502/504), or the request (its 4xx).
        /// </summary>
        private static async Task<Error> RefusalAsync(HttpResponseMessage response, LlmCall.Target target, string? key, CancellationToken ct)
        {
            var status = (int)response.StatusCode;
            var message = await ProviderMessageAsync(response, ct);
            if (key is { Length: > 0 }) message = message.Replace(key, "***", StringComparison.Ordinal);
            var said = $"The provider of '{target.Name}' answered HTTP {status}: {message}";
            return status switch
            {
                401 or 403 => new Error("upstream_auth_failed", 502, "Provider refused the key.",
                    $"{said} Rotate the integration's key or attach another credential."),
                429 => new Error("upstream_rate_limited", 429, "Provider rate limit.", said,
                    Extensions: new Dictionary<string, object?> { ["retry_after_seconds"] = (int)Math.Ceiling((LlmUpstream.RetryAfter(response) ?? TimeSpan.FromSeconds(1)).TotalSeconds) }),
                408 or 504 => Error.UpstreamTimeout(said),
                >= 500 => Error.UpstreamError(said),
                _ => new Error("upstream_rejected", status, "Provider rejected the request.", said),
            };
        }

        private static async Task<string> ProviderMessageAsync(HttpResponseMessage response, CancellationToken ct)
        {
            string text;
            try
            {
                var bytes = await response.Content.ReadAsByteArrayAsync(ct);
                text = Encoding.UTF8.GetString(bytes, 0, Math.Min(bytes.Length, 8 * 1024));
            }
            catch (Exception e) when (e is HttpRequestException or IOException)
            {
                return response.ReasonPhrase ?? "no message";
            }
            try
            {
                using var document = JsonDocument.Parse(text);
                if (document.RootElement.ValueKind == JsonValueKind.Object && document.RootElement.TryGetProperty("error", out var error))
                {
                    if (error.ValueKind == JsonValueKind.String) return error.GetString()!;
                    if (error.ValueKind == JsonValueKind.Object && error.TryGetProperty("message", out var message) && message.ValueKind == JsonValueKind.String)
                    {
                        return message.GetString()!;
                    }
                }
            }
            catch (JsonException)
            {
                // not JSON: the text itself, shortened
            }
            return text.Length > 500 ? text[..500] : text.Length == 0 ? response.ReasonPhrase ?? "no message" : text;
        }
    }

    internal static void Map(RouteGroupBuilder group)
    {
        group.MapPost("/chat/completions", (HttpContext http, IMediator mediator) => SendAsync(http, mediator, ChatCompletions))
            .WithName(Command.Operation) // the operation; embeddings is the same operation at another endpoint
            .WithSummary("OpenAI-compatible chat completions (stream: true answers server-sent events as the provider sends them), on the tenant's integrations.")
            .Accepts<ChatCompletionRequest>("application/json")
            // One 200 in two media types: the answer as JSON, or (stream: true) its events as text/event-stream.
            .Produces<ChatCompletion>(StatusCodes.Status200OK, "application/json", "text/event-stream");
        group.MapPost("/messages", (HttpContext http, IMediator mediator) => SendAsync(http, mediator, Messages))
            .WithName(Command.Operation + ".messages")
            .WithSummary("Anthropic's Messages API (stream: true answers its server-sent events as they come), on the tenant's anthropic integrations.")
            .Accepts<AnthropicMessagesRequest>("application/json")
            // One 200 in two media types: the answer as JSON, or (stream: true) its events as text/event-stream.
            .Produces<AnthropicMessage>(StatusCodes.Status200OK, "application/json", "text/event-stream");
        group.MapPost("/embeddings", (HttpContext http, IMediator mediator) => SendAsync(http, mediator, Embeddings))
            .WithName(Command.Operation + ".embeddings")
            .WithSummary("OpenAI-compatible embeddings, on the tenant's integrations.")
            .Accepts<EmbeddingsRequest>("application/json")
            .Produces<EmbeddingList>();
    }

    private static async Task<IResult> SendAsync(HttpContext http, IMediator mediator, string endpoint)
    {
        JsonObject? body;
        try
        {
            body = await JsonNode.ParseAsync(http.Request.Body, cancellationToken: http.RequestAborted) as JsonObject;
        }
        catch (JsonException)
        {
            body = null;
        }
        if (body is null) return new Error("malformed_request", 400, "Malformed request.", "The body must be a JSON object.").ToHttp(http);

        var headers = http.Request.Headers;
        var command = new Command(endpoint, body, NullIfEmpty(headers[IntegrationHeader]), NullIfEmpty(headers[RunIdHeader]))
        {
            ApiKeyId = Infrastructure.Security.ApiKeys.KeyIdOf(http.RequestServices.GetRequiredService<CallerContext>().Required.Actor),
            Stream = new EventStream(http.Response),
            AnthropicVersion = endpoint == Messages ? NullIfEmpty(headers["anthropic-version"]) : null,
            AnthropicBeta = endpoint == Messages ? NullIfEmpty(headers["anthropic-beta"]) : null,
        };
        var result = await mediator.Send(command, http.RequestAborted);
        if (result.IsSuccess)
        {
            if (result.Value.Streamed) return Results.Empty;
            http.Response.Headers[InvocationIdHeader] = result.Value.InvocationId.ToString();
            return Results.Bytes(result.Value.Body, "application/json");
        }
        if (command.Stream.Started)
        {
            await command.Stream.WriteErrorAsync(result.Error!, http);
            return Results.Empty;
        }
        return result.Error!.ToHttp(http);

        static string? NullIfEmpty(string? value) => string.IsNullOrWhiteSpace(value) ? null : value.Trim();
    }

    /// <summary>
    /// What one call observed — tokens, cost, the model that served it, time to first byte, attempts — reported to the
    /// call (its outcome event and usage row) whether it completes, fails or is cancelled midway.
    /// </summary>
    private sealed class UsageMeter(LlmCall.Target target, GovernedCall call, Command request)
    {
        private readonly AnthropicTranslation.Tokens? _anthropic = target.Provider == "anthropic" ? new() : null;
        private long? _prompt;
        private long? _completion;
        private long _cached;
        private long _completionChars;
        private double? _firstByteMs;
        private string? _servedModel;

        public Guid InvocationId => call.Id;
        public int PromptBytes { get; set; }
        public int Attempts { get; set; }
        public int? UpstreamStatus { get; set; }

        /// <summary>A choice ended (<c>finish_reason</c>): the stream said all it had to say even without <c>[DONE]</c>.</summary>
        public bool Finished { get; private set; }

        public void FirstByte() => _firstByteMs ??= call.Elapsed;

        /// <summary>A whole answer (chat completion or embeddings).</summary>
        public void Observe(JsonElement root)
        {
            if (root.ValueKind != JsonValueKind.Object) return;
            if (root.TryGetProperty("model", out var model) && model.ValueKind == JsonValueKind.String) _servedModel = model.GetString();
            if (root.TryGetProperty("usage", out var usage)) ReadUsage(usage);
        }

        /// <summary>An event of Anthropic's stream: <c>message_start</c> (model, input tokens), <c>content_block_delta</c>, <c>message_delta</c> (output tokens so far), <c>message_stop</c>.</summary>
        private void ObserveAnthropicEvent(JsonElement root, string type)
        {
            switch (type)
            {
                case "message_start" when root.TryGetProperty("message", out var message) && message.ValueKind == JsonValueKind.Object:
                    Observe(message);
                    break;
                case "content_block_delta" when root.TryGetProperty("delta", out var delta):
                    _completionChars += delta.GetRawText().Length;
                    break;
                case "message_delta" when root.TryGetProperty("usage", out var usage):
                    ReadUsage(usage);
                    break;
                case "message_stop":
                    Finished = true;
                    break;
            }
        }

        /// <summary>One streamed chunk; true when it is a usage-only chunk (no choices, usage set).</summary>
        public bool ObserveChunk(ReadOnlySpan<char> data)
        {
            FirstByte();
            try
            {
                using var document = JsonDocument.Parse(data.ToString());
                var root = document.RootElement;
                if (root.ValueKind != JsonValueKind.Object) return false;
                if (_anthropic is not null)
                {
                    if (root.TryGetProperty("type", out var type) && type.ValueKind == JsonValueKind.String) ObserveAnthropicEvent(root, type.GetString()!);
                    return false;
                }
                Observe(root);
                var hasChoices = false;
                if (root.TryGetProperty("choices", out var choices) && choices.ValueKind == JsonValueKind.Array)
                {
                    foreach (var choice in choices.EnumerateArray())
                    {
                        hasChoices = true;
                        if (choice.TryGetProperty("finish_reason", out var reason) && reason.ValueKind == JsonValueKind.String) Finished = true;
                        if (choice.TryGetProperty("delta", out var delta) && delta.ValueKind == JsonValueKind.Object) _completionChars += delta.GetRawText().Length;
                    }
                }
                return !hasChoices && root.TryGetProperty("usage", out var usage) && usage.ValueKind == JsonValueKind.Object;
            }
            catch (JsonException)
            {
                return false;
            }
        }

        private void ReadUsage(JsonElement usage)
        {
            if (usage.ValueKind != JsonValueKind.Object) return;
            if (_anthropic is not null)
            {
                _anthropic.Read(usage);
                (_prompt, _completion, _cached) = (_anthropic.Prompt, _anthropic.Completion, _anthropic.Cached);
                return;
            }
            if (usage.TryGetProperty("prompt_tokens", out var prompt) && prompt.TryGetInt64(out var p)) _prompt = p;
            if (usage.TryGetProperty("completion_tokens", out var completion) && completion.TryGetInt64(out var c)) _completion = c;
            else if (_prompt is not null && request.Endpoint == Embeddings) _completion = 0;
            if (usage.TryGetProperty("prompt_tokens_details", out var details) && details.ValueKind == JsonValueKind.Object
                && details.TryGetProperty("cached_tokens", out var cached) && cached.TryGetInt64(out var k))
            {
                _cached = k;
            }
        }

        /// <summary>
        /// Reports what was seen. Counts the provider did not give are estimated at four bytes a token (the request's JSON
        /// for the prompt, the streamed deltas for the completion) and the row says so.
        /// </summary>
        public (long Prompt, long Completion, bool Estimated, decimal? Cost) Report(bool estimateMissing)
        {
            var estimated = false;
            var prompt = _prompt ?? (estimateMissing ? Estimate(PromptBytes, ref estimated) : 0);
            var completion = _completion ?? (estimateMissing ? Estimate(_completionChars, ref estimated) : 0);
            var cost = target.CostCents(prompt, completion, _cached) is { } cents ? Math.Round(cents, 6) : (decimal?)null;
            call.Report(new CallOutput(Facts: new Dictionary<string, object?>
            {
                [LlmFacts.ServedModel] = _servedModel,
                [LlmFacts.PromptTokens] = prompt,
                [LlmFacts.CompletionTokens] = completion,
                [LlmFacts.CachedTokens] = _cached,
                [LlmFacts.TokensEstimated] = estimated,
                [LlmFacts.CostCents] = cost,
                [LlmFacts.UpstreamStatus] = UpstreamStatus,
                [LlmFacts.FirstTokenMs] = _firstByteMs,
                [LlmFacts.Attempts] = Attempts,
            }));
            return (prompt, completion, estimated, cost);

            static long Estimate(long bytes, ref bool estimated)
            {
                estimated = true;
                return (bytes + 3) / 4;
            }
        }

        public Error Fail(Error error)
        {
            // A refusal before any answer consumed nothing; a stream that broke off consumed what it streamed.
            Report(estimateMissing: _firstByteMs is not null);
            return error;
        }

        public Result<Response> Complete(ReadOnlyMemory<byte> body, bool streamed)
        {
            var (prompt, completion, estimated, cost) = Report(estimateMissing: true);
            return new Response(call.Id, _servedModel, prompt, completion, _cached, estimated, cost, streamed, body);
        }
    }
}
