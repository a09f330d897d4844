using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Anthropic;
using Anthropic.Models.Messages;

namespace Integrations.Tests.LlmGateway;

/// <summary>Anthropic's Messages API passed through natively at /v1/messages to anthropic integrations (raw wire format).</summary>
public sealed class AnthropicMessagesTests(LlmGatewayFixture fixture) : IClassFixture<LlmGatewayFixture>
{
    private static object Message(string model, bool stream = false) => new
    {
        model,
        max_tokens = 256,
        stream,
        system = "Be brief.",
        messages = new[] { new { role = "user", content = "bonjour" } },
        metadata = new { user_id = "u-1" },
    };

    [Fact]
    public async Task A_message_goes_to_the_anthropic_integration_with_its_key_and_records_usage_with_cache_reads()
    {
        var tenant = await fixture.TenantAsync(name: "oai");
        var anthropic = await tenant.IntegrationAsync("claude", provider: "anthropic", baseUrl: fixture.Provider.BaseUrl);
        using var http = tenant.Http();

        var response = await http.PostAsJsonAsync("/v1/messages", Message("claude/claude-haiku-4-5"));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var message = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal("echo: bonjour", message.GetProperty("content")[0].GetProperty("text").GetString());
        var sent = Assert.Single(fixture.Provider.CallsFor("claude-haiku-4-5"), c => c.Anthropic.Key == tenant.Secret);
        Assert.Equal(("/v1/messages", "2023-06-01", null), (sent.Path, sent.Anthropic.Version, sent.Authorization));
        Assert.Equal("Be brief.", sent.Body["system"]!.GetValue<string>());
        Assert.Equal("u-1", sent.Body["metadata"]!["user_id"]!.GetValue<string>());

        var row = Assert.Single(await tenant.UsageAsync());
        Assert.Equal(("messages", anthropic, "anthropic", "completed"), (row.Endpoint, row.IntegrationId!.Value, row.Provider!, row.Status));
        Assert.Equal((11L, 7L, 2L, false), (row.PromptTokens, row.CompletionTokens, row.CachedTokens, row.TokensEstimated));
        Assert.Equal(0.00442m, row.CostCents); // 9 × 100 + 2 × 10 + 7 × 500 cents per million tokens
    }

    [Fact]
    public async Task The_official_anthropic_client_works_by_changing_only_its_base_url()
    {
        var tenant = await fixture.TenantAsync(name: "oai");
        await tenant.IntegrationAsync("claude", provider: "anthropic", baseUrl: fixture.Provider.BaseUrl);
        // The client sends its key as x-api-key, which the gateway reads as its own API key header.
        var client = new AnthropicClient
        {
            ApiKey = tenant.LlmKey,
            BaseUrl = fixture.Factory.Server.BaseAddress.ToString().TrimEnd('/'),
            HttpClient = fixture.Factory.CreateClient(),
            MaxRetries = 0,
        };
        var parameters = new MessageCreateParams { MaxTokens = 256, Messages = [new UserMessageParam("bonjour")], Model = "claude/claude-haiku-4-5" };

        var message = await client.Messages.Create(parameters);
        var events = 0;
        long? outputTokens = null;
        await foreach (var streamed in client.Messages.CreateStreaming(parameters with { Model = "claude/claude-stream" }))
        {
            events++;
            if (streamed.TryPickDelta(out var delta)) outputTokens = delta.Usage.OutputTokens;
        }

        Assert.True(message.Content[0].TryPickText(out var text));
        Assert.Equal("echo: bonjour", text!.Text);
        Assert.Equal((9L, 7L), (message.Usage.InputTokens, message.Usage.OutputTokens));
        Assert.Equal(10, events); // the ping is not an event the client surfaces
        Assert.Equal(7L, outputTokens);
        var rows = await tenant.UsageAsync(2);
        Assert.Equal([false, true], rows.Select(r => r.Streaming));
        Assert.All(rows, r => Assert.Equal(("completed", 11L, 7L), (r.Status, r.PromptTokens, r.CompletionTokens)));
    }

    [Fact]
    public async Task A_streamed_message_arrives_event_by_event_before_the_last_is_sent_with_the_providers_usage()
    {
        var tenant = await fixture.TenantAsync(name: "oai");
        await tenant.IntegrationAsync("claude", provider: "anthropic", baseUrl: fixture.Provider.BaseUrl);
        using var http = tenant.Http();

        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/messages") { Content = JsonContent.Create(Message("claude/claude-drip", stream: true)) };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        long? firstText = null;
        var events = new List<string>();
        while (await reader.ReadLineAsync() is { } line)
        {
            if (line.StartsWith("event: ", StringComparison.Ordinal)) events.Add(line[7..]);
            if (line.Contains("text_delta", StringComparison.Ordinal)) firstText ??= Stopwatch.GetTimestamp();
        }

        Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);
        Assert.Equal(["message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta", "content_block_delta",
            "content_block_delta", "content_block_delta", "content_block_stop", "message_delta", "message_stop"], events);
        var sent = Assert.Single(fixture.Provider.CallsFor("claude-drip"), c => c.Anthropic.Key == tenant.Secret);
        Assert.Null(sent.Body["stream_options"]); // an OpenAI field, never added for Anthropic
        Assert.True(firstText < sent.ChunkSentAt.Last());
        var row = Assert.Single(await tenant.UsageAsync(1));
        Assert.Equal(("completed", true, 11L, 7L, false), (row.Status, row.Streaming, row.PromptTokens, row.CompletionTokens, row.TokensEstimated));
    }

    [Fact]
    public async Task Each_route_serves_only_its_providers_and_refusals_at_messages_are_in_anthropics_shape()
    {
        var tenant = await fixture.TenantAsync(name: "oai");
        await tenant.IntegrationAsync("claude", provider: "anthropic", baseUrl: fixture.Provider.BaseUrl);
        using var http = tenant.Http();

        var openAiAtMessages = await http.PostAsJsonAsync("/v1/messages", Message("oai/gpt-4o"));
        var anthropicAtEmbeddings = await http.PostAsJsonAsync("/v1/embeddings", new { model = "claude/claude-haiku-4-5", input = "hi" });
        var unknown = await http.PostAsJsonAsync("/v1/messages", Message("nobody/claude"));

        Assert.Equal((HttpStatusCode.BadRequest, HttpStatusCode.BadRequest, HttpStatusCode.NotFound),
            (openAiAtMessages.StatusCode, anthropicAtEmbeddings.StatusCode, unknown.StatusCode));
        var anthropicShape = await openAiAtMessages.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal("error", anthropicShape.GetProperty("type").GetString());
        Assert.Equal(("invalid_request_error", "endpoint_not_served"),
            (anthropicShape.GetProperty("error").GetProperty("type").GetString(), anthropicShape.GetProperty("error").GetProperty("code").GetString()));
        Assert.Equal("not_found_error", (await unknown.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("error").GetProperty("type").GetString());
        Assert.Equal("endpoint_not_served", (await anthropicAtEmbeddings.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("error").GetProperty("code").GetString());
        Assert.DoesNotContain(fixture.Provider.Calls, c => c.Anthropic.Key == tenant.Secret || c.Authorization == $"Bearer {tenant.Secret}");
    }

    [Fact]
    public async Task The_clients_anthropic_version_and_beta_headers_reach_the_provider_at_messages_only()
    {
        var tenant = await fixture.TenantAsync(name: "oai");
        await tenant.IntegrationAsync("claude", provider: "anthropic", baseUrl: fixture.Provider.BaseUrl);
        using var http = tenant.Http();

        using var native = new HttpRequestMessage(HttpMethod.Post, "/v1/messages") { Content = JsonContent.Create(Message("claude/claude-versioned")) };
        native.Headers.Add("anthropic-version", "2024-10-22");
        native.Headers.Add("anthropic-beta", "prompt-caching-2024-07-31,token-efficient-tools-2025-02-19");
        using var chat = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = JsonContent.Create(new { model = "claude/claude-translated", messages = new[] { new { role = "user", content = "hi" } } }),
        };
        chat.Headers.Add("anthropic-beta", "prompt-caching-2024-07-31");
        using var injected = new HttpRequestMessage(HttpMethod.Post, "/v1/messages") { Content = JsonContent.Create(Message("claude/claude-injected")) };
        injected.Headers.TryAddWithoutValidation("anthropic-beta", "a\u0001b");

        Assert.Equal(HttpStatusCode.OK, (await http.SendAsync(native)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await http.SendAsync(chat)).StatusCode);
        var refused = await http.SendAsync(injected);

        var versioned = Assert.Single(fixture.Provider.CallsFor("claude-versioned"), c => c.Anthropic.Key == tenant.Secret);
        Assert.Equal(("2024-10-22", "prompt-caching-2024-07-31,token-efficient-tools-2025-02-19"), (versioned.Anthropic.Version, versioned.AnthropicBeta));
        var translated = Assert.Single(fixture.Provider.CallsFor("claude-translated"), c => c.Anthropic.Key == tenant.Secret);
        Assert.Equal(("2023-06-01", null), (translated.Anthropic.Version, translated.AnthropicBeta)); // the translation speaks the version it knows
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        Assert.Empty(fixture.Provider.CallsFor("claude-injected"));
    }

    [Fact]
    public async Task A_chat_completion_the_messages_api_cannot_say_is_400_untranslatable_request_and_recorded()
    {
        var tenant = await fixture.TenantAsync(name: "oai");
        await tenant.IntegrationAsync("claude", provider: "anthropic", baseUrl: fixture.Provider.BaseUrl);
        using var http = tenant.Http();

        var response = await http.PostAsJsonAsync("/v1/chat/completions", new
        {
            model = "claude/claude-audio",
            messages = new object[] { new { role = "user", content = new object[] { new { type = "input_audio", input_audio = new { data = "AAAA", format = "wav" } } } } },
        });

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("error");
        Assert.Equal("untranslatable_request", error.GetProperty("code").GetString());
        Assert.Contains("input_audio", error.GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Empty(fixture.Provider.CallsFor("claude-audio"));
        var row = Assert.Single(await tenant.UsageAsync());
        Assert.Equal(("failed", "untranslatable_request", 0L), (row.Status, row.ErrorCode!, row.PromptTokens));
    }
}
