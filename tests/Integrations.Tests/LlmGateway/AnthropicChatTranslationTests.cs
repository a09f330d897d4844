using System.Text.Json;
using System.Text.Json.Nodes;
using Integrations.Features.LlmGateway;
using Integrations.Tests.Support;

namespace Integrations.Tests.LlmGateway;

/// <summary>
/// Chat completions to an <c>anthropic</c> integration: the <c>openai</c> npm client on one side, the fake provider
/// speaking Anthropic's Messages API (JSON and its typed SSE events) on the other, the gateway translating between them.
/// </summary>
public sealed class AnthropicChatTranslationTests(KestrelLlmGatewayFixture fixture) : IClassFixture<KestrelLlmGatewayFixture>
{
    [Fact]
    public async Task The_openai_npm_client_chats_with_an_anthropic_integration_tools_images_stream_and_stop_reasons_translated()
    {
        var tenant = await fixture.TenantAsync(name: "oai");
        var claude = await tenant.IntegrationAsync("claude", provider: "anthropic", baseUrl: fixture.Provider.BaseUrl);

        var run = await NpmFixtures.RunAsync("node", [Path.Combine(NpmFixtures.Directory, "llm-anthropic-chat.mjs")], NpmFixtures.Directory,
            TimeSpan.FromSeconds(60), new Dictionary<string, string>
            {
                ["OPENAI_BASE_URL"] = new Uri(fixture.Address, "/v1").ToString(),
                ["OPENAI_API_KEY"] = tenant.LlmKey,
                ["INTEGRATION"] = "claude",
            });
        Assert.True(run.ExitCode == 0, run.Output);
        var result = JsonDocument.Parse(run.Stdout).RootElement;

        // What the client saw: OpenAI's shapes, Anthropic's answers.
        var first = result.GetProperty("first");
        Assert.Equal(("Let me look.", "tool_calls"), (first.GetProperty("content").GetString(), first.GetProperty("finish").GetString()));
        var toolCall = first.GetProperty("toolCall");
        Assert.Equal(("toolu_1", "function", "get_weather"),
            (toolCall.GetProperty("id").GetString(), toolCall.GetProperty("type").GetString(), toolCall.GetProperty("function").GetProperty("name").GetString()));
        Assert.Equal("Paris", JsonDocument.Parse(toolCall.GetProperty("function").GetProperty("arguments").GetString()!).RootElement.GetProperty("city").GetString());
        var usage = first.GetProperty("usage");
        Assert.Equal((11, 7, 18, 2), (usage.GetProperty("prompt_tokens").GetInt32(), usage.GetProperty("completion_tokens").GetInt32(),
            usage.GetProperty("total_tokens").GetInt32(), usage.GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32()));
        Assert.Equal(("echo: result 18°C and sunny", "stop"),
            (result.GetProperty("second").GetProperty("content").GetString(), result.GetProperty("second").GetProperty("finish").GetString()));
        Assert.Equal("length", result.GetProperty("long").GetProperty("finish").GetString());
        var stream = result.GetProperty("stream");
        Assert.Equal(string.Concat(FakeOpenAi.Words), stream.GetProperty("content").GetString());
        Assert.Equal(("toolu_1", "get_weather"), (stream.GetProperty("tool").GetProperty("id").GetString(), stream.GetProperty("tool").GetProperty("name").GetString()));
        Assert.Equal("{\"city\": \"Paris\"}", stream.GetProperty("arguments").GetString());
        Assert.Equal("tool_calls", stream.GetProperty("finish").GetString());
        Assert.Equal((11, 7), (stream.GetProperty("usage").GetProperty("prompt_tokens").GetInt32(), stream.GetProperty("usage").GetProperty("completion_tokens").GetInt32()));

        // What the provider was sent: the Messages API, with the tenant's key.
        var asked = Assert.Single(fixture.Provider.CallsFor("claude-tool"), c => c.Anthropic.Key == tenant.Secret);
        Assert.Equal(("/v1/messages", "2023-06-01", null), (asked.Path, asked.Anthropic.Version, asked.Authorization));
        var body = asked.Body;
        Assert.Equal("Be brief.", body["system"]!.GetValue<string>());
        Assert.Equal((100, 5), (body["max_tokens"]!.GetValue<int>(), body["top_k"]!.GetValue<int>()));
        Assert.Equal(["END"], body["stop_sequences"]!.AsArray().Select(s => s!.GetValue<string>()));
        Assert.Equal("user-7", body["metadata"]!["user_id"]!.GetValue<string>());
        Assert.Equal("auto", body["tool_choice"]!["type"]!.GetValue<string>());
        Assert.Equal("object", body["tools"]![0]!["input_schema"]!["type"]!.GetValue<string>());
        Assert.Equal("The weather in a city", body["tools"]![0]!["description"]!.GetValue<string>());
        foreach (var openAiOnly in new[] { "user", "stop", "tool_calls", "frequency_penalty", "stream_options" }) Assert.False(body.ContainsKey(openAiOnly), openAiOnly);
        var turn = Assert.Single(body["messages"]!.AsArray())!;
        Assert.Equal("user", turn["role"]!.GetValue<string>());
        var blocks = turn["content"]!.AsArray();
        Assert.Equal(["text", "image", "image"], blocks.Select(b => b!["type"]!.GetValue<string>()));
        Assert.Equal(("url", "https://images.example.com/paris.png"), (blocks[1]!["source"]!["type"]!.GetValue<string>(), blocks[1]!["source"]!["url"]!.GetValue<string>()));
        Assert.Equal(("base64", "image/png", "iVBORw0KGgo="), (blocks[2]!["source"]!["type"]!.GetValue<string>(),
            blocks[2]!["source"]!["media_type"]!.GetValue<string>(), blocks[2]!["source"]!["data"]!.GetValue<string>()));

        var followUp = Assert.Single(fixture.Provider.CallsFor("claude-haiku-4-5"), c => c.Anthropic.Key == tenant.Secret).Body["messages"]!.AsArray();
        Assert.Equal(["user", "assistant", "user"], followUp.Select(m => m!["role"]!.GetValue<string>()));
        var answered = followUp[1]!["content"]!.AsArray();
        Assert.Equal(["text", "tool_use"], answered.Select(b => b!["type"]!.GetValue<string>()));
        Assert.Equal(("toolu_1", "get_weather", "Paris"), (answered[1]!["id"]!.GetValue<string>(), answered[1]!["name"]!.GetValue<string>(),
            answered[1]!["input"]!["city"]!.GetValue<string>()));
        var result0 = Assert.Single(followUp[2]!["content"]!.AsArray())!;
        Assert.Equal(("tool_result", "toolu_1", "18°C and sunny"),
            (result0["type"]!.GetValue<string>(), result0["tool_use_id"]!.GetValue<string>(), result0["content"]!.GetValue<string>()));

        // The usage rows: what the client called, who served it, the provider's counts.
        var rows = await tenant.UsageAsync(4);
        Assert.Equal(4, rows.Count);
        Assert.All(rows, r => Assert.Equal(("chat.completions", claude, "anthropic", "completed", 11L, 7L, 2L, false),
            (r.Endpoint, r.IntegrationId!.Value, r.Provider!, r.Status, r.PromptTokens, r.CompletionTokens, r.CachedTokens, r.TokensEstimated)));
        Assert.Equal([false, false, false, true], rows.Select(r => r.Streaming));
        Assert.Equal("claude-tool-drip-served", rows[3].ServedModel);
        Assert.Equal(["llm.request.requested", "llm.request.allowed", "llm.request.started", "llm.request.completed"], await tenant.EventsAsync(rows[3].Id));
    }

    [Fact]
    public void Requests_the_messages_api_cannot_say_are_refused_by_name_and_stop_reasons_map_to_finish_reasons()
    {
        var audio = JsonNode.Parse("""{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"x","format":"wav"}}]}]}""")!.AsObject();
        var e = Assert.Throws<AnthropicTranslation.UntranslatableException>(() => AnthropicTranslation.ToMessagesRequest(audio, "m"));
        Assert.Contains("input_audio", e.Message, StringComparison.Ordinal);
        var badArguments = JsonNode.Parse("""{"messages":[{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{not json"}}]}]}""")!.AsObject();
        Assert.Throws<AnthropicTranslation.UntranslatableException>(() => AnthropicTranslation.ToMessagesRequest(badArguments, "m"));

        var noMax = AnthropicTranslation.ToMessagesRequest(JsonNode.Parse("""
            {"messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}],"tools":[{"type":"function","function":{"name":"f"}}],
             "tool_choice":{"type":"function","function":{"name":"f"}},"parallel_tool_calls":false}
            """)!.AsObject(), "m");
        Assert.Equal(AnthropicTranslation.DefaultMaxTokens, noMax["max_tokens"]!.GetValue<int>());
        Assert.Equal(2, Assert.Single(noMax["messages"]!.AsArray())!["content"]!.AsArray().Count); // one user turn: Anthropic alternates roles
        Assert.Equal(("tool", "f", true), (noMax["tool_choice"]!["type"]!.GetValue<string>(), noMax["tool_choice"]!["name"]!.GetValue<string>(),
            noMax["tool_choice"]!["disable_parallel_tool_use"]!.GetValue<bool>()));

        Assert.Equal(["stop", "stop", "length", "tool_calls", "content_filter", null],
            new[] { "end_turn", "stop_sequence", "max_tokens", "tool_use", "refusal", null }.Select(AnthropicTranslation.FinishReason));
    }
}
