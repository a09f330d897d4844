using System.ClientModel;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Integrations.Tests.Support;
using OpenAI.Chat;

namespace Integrations.Tests.LlmGateway;

/// <summary>The official OpenAI .NET SDK (2.15.0) pointed at the gateway's /v1, against a fake provider speaking OpenAI's wire format.</summary>
public sealed class OpenAiSdkTests(LlmGatewayFixture fixture) : IClassFixture<LlmGatewayFixture>
{
    private static readonly string[] Requested = ["requested", "allowed", "started", "completed"];

    [Fact]
    public async Task Chat_answers_through_the_sdk_and_records_usage_cost_and_audit()
    {
        var tenant = await fixture.TenantAsync();
        var chat = tenant.OpenAi().GetChatClient("llm/gpt-4o-mini");

        ChatCompletion completion = await chat.CompleteChatAsync([new UserChatMessage("ping")], new ChatCompletionOptions { Temperature = 0.5f });

        Assert.Equal("echo: ping", completion.Content[0].Text);
        Assert.Equal("gpt-4o-mini-served", completion.Model);
        Assert.Equal(FakeOpenAi.PromptTokens, completion.Usage.InputTokenCount);

        var sent = Assert.Single(fixture.Provider.CallsFor("gpt-4o-mini"), c => c.Authorization == $"Bearer {tenant.Secret}");
        Assert.Equal("/v1/chat/completions", sent.Path);
        Assert.Equal(0.5, sent.Body["temperature"]!.GetValue<double>(), 3); // the rest of the body as the client sent it

        var row = Assert.Single(await tenant.UsageAsync());
        Assert.Equal(("completed", tenant.IntegrationId, tenant.LlmKeyId), (row.Status, row.IntegrationId!.Value, row.ApiKeyId!.Value));
        Assert.Equal(("llm/gpt-4o-mini", "gpt-4o-mini-served", "openai_compatible", false), (row.RequestedModel, row.ServedModel, row.Provider, row.Streaming));
        Assert.Equal((11L, 7L, 2L, false), (row.PromptTokens, row.CompletionTokens, row.CachedTokens, row.TokensEstimated));
        Assert.Equal(0.00057m, row.CostCents); // 9 × 15 + 2 × 7.5 + 7 × 60 cents per million tokens
        Assert.Equal((1, 200), (row.Attempts, row.UpstreamStatus!.Value));

        Assert.Equal(Requested.Select(s => $"llm.request.{s}"), await tenant.EventsAsync(row.Id));
        var completed = await tenant.EventDetailsAsync(row.Id, "llm.request.completed");
        Assert.Equal(11, completed.GetProperty("prompt_tokens").GetInt32());
        Assert.Equal("gpt-4o-mini", completed.GetProperty("model").GetString());
        Assert.DoesNotContain("ping", completed.GetRawText(), StringComparison.Ordinal); // never the prompt
        Assert.False(await Credentials.VaultTestKit.DatabaseContainsAsync(fixture.ConnectionString, tenant.Id, tenant.Secret));
    }

    [Fact]
    public async Task Streaming_reaches_the_client_before_the_last_chunk_is_sent_and_records_the_providers_usage()
    {
        var tenant = await fixture.TenantAsync();
        var chat = tenant.OpenAi().GetChatClient("llm/gpt-4o-mini-drip");

        long? firstReceived = null;
        var text = "";
        ChatTokenUsage? usage = null;
        await foreach (var update in chat.CompleteChatStreamingAsync([new UserChatMessage("stream please")]))
        {
            foreach (var part in update.ContentUpdate)
            {
                if (part.Text.Length > 0) firstReceived ??= Stopwatch.GetTimestamp();
                text += part.Text;
            }
            usage ??= update.Usage;
        }

        Assert.Equal(string.Concat(FakeOpenAi.Words), text);
        Assert.Equal((11, 7), (usage!.InputTokenCount, usage.OutputTokenCount)); // the SDK asks for usage itself
        var sent = Assert.Single(fixture.Provider.CallsFor("gpt-4o-mini-drip"), c => c.Authorization == $"Bearer {tenant.Secret}");
        Assert.True(sent.Body["stream_options"]!["include_usage"]!.GetValue<bool>());
        Assert.True(firstReceived < sent.ChunkSentAt.Last(),
            $"the first words arrived {Stopwatch.GetElapsedTime(sent.ChunkSentAt.Last(), firstReceived!.Value).TotalMilliseconds:0} ms after the last chunk was sent");

        var row = Assert.Single(await tenant.UsageAsync(1));
        Assert.Equal(("completed", true, 11L, 7L, false), (row.Status, row.Streaming, row.PromptTokens, row.CompletionTokens, row.TokensEstimated));
        Assert.NotNull(row.FirstTokenMs);
        Assert.True(row.FirstTokenMs < row.LatencyMs - 300, $"first token {row.FirstTokenMs} ms, whole stream {row.LatencyMs} ms");
        Assert.Equal(Requested.Select(s => $"llm.request.{s}"), await tenant.EventsAsync(row.Id));
    }

    [Fact]
    public async Task Streaming_passes_usage_on_when_the_client_asks_for_it_and_estimates_when_the_provider_gives_none()
    {
        var tenant = await fixture.TenantAsync();
        using var http = tenant.Http();
        var asked = await http.PostAsJsonAsync("/v1/chat/completions", new
        {
            model = "llm/gpt-4o-mini",
            stream = true,
            stream_options = new { include_usage = true },
            messages = new[] { new { role = "user", content = "hi" } },
        });
        var events = await asked.Content.ReadAsStringAsync();
        Assert.Equal("text/event-stream", asked.Content.Headers.ContentType!.MediaType);
        Assert.Contains("\"usage\":{\"prompt_tokens\":11", events, StringComparison.Ordinal);
        Assert.EndsWith("data: [DONE]\n\n", events, StringComparison.Ordinal);

        // Not asked: the gateway asks the provider all the same, and keeps the usage chunk from the client.
        var notAsked = await http.PostAsJsonAsync("/v1/chat/completions", new
        {
            model = "llm/gpt-4o-mini",
            stream = true,
            messages = new[] { new { role = "user", content = "hi" } },
        });
        var plain = await notAsked.Content.ReadAsStringAsync();
        Assert.DoesNotContain("\"usage\"", plain, StringComparison.Ordinal);
        Assert.Contains("provider", plain, StringComparison.Ordinal);

        var none = await http.PostAsJsonAsync("/v1/chat/completions", new
        {
            model = "llm/nousage",
            stream = true,
            messages = new[] { new { role = "user", content = "hi" } },
        });
        Assert.DoesNotContain("\"usage\"", await none.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        var rows = await tenant.UsageAsync(3);
        Assert.Equal((false, 11L, 0.00057m), (rows[0].TokensEstimated, rows[0].PromptTokens, rows[0].CostCents));
        Assert.Equal((false, 11L, 7L), (rows[1].TokensEstimated, rows[1].PromptTokens, rows[1].CompletionTokens));
        Assert.True(rows[2].TokensEstimated);
        Assert.True(rows[2].PromptTokens > 0 && rows[2].CompletionTokens > 0, $"{rows[2].PromptTokens} / {rows[2].CompletionTokens}");
    }

    [Fact]
    public async Task A_model_with_no_price_gets_a_usage_row_with_its_tokens_and_no_cost_and_its_tokens_count_against_the_month()
    {
        var tenant = await fixture.TenantAsync(limits: new { tokens_per_month = 18, budget_cents_per_month = 1 });
        var chat = tenant.OpenAi().GetChatClient("llm/our-own-finetune");

        await chat.CompleteChatAsync([new UserChatMessage("hi")]);
        var refused = await Assert.ThrowsAsync<ClientResultException>(() => chat.CompleteChatAsync([new UserChatMessage("again")]));

        var rows = await tenant.UsageAsync();
        Assert.Equal(("completed", 11L, 7L, (decimal?)null), (rows[0].Status, rows[0].PromptTokens, rows[0].CompletionTokens, rows[0].CostCents));
        Assert.Equal((429, "denied", (decimal?)0m), (refused.Status, rows[1].Status, rows[1].CostCents)); // 18 of 18 tokens spent (no cents): the tokens count
        Assert.Contains("token_limit_exceeded", refused.Message, StringComparison.Ordinal);
        var listed = await tenant.Admin.GetFromJsonAsync<JsonElement>("/integrations/llm-requests?status=completed");
        Assert.Equal(JsonValueKind.Null, listed.GetProperty("items")[0].GetProperty("cost_cents").ValueKind);
    }

    [Fact]
    public async Task A_tenants_own_price_costs_its_requests_and_other_tenants_keep_the_list_price()
    {
        var tenant = await fixture.TenantAsync();
        var other = await fixture.TenantAsync();
        var set = await tenant.Admin.PutAsJsonAsync("/integrations/llm-prices/gpt-4o-mini",
            new { input_cents_per_mtok = 1000, output_cents_per_mtok = 2000, cached_cents_per_mtok = 500 });
        Assert.Equal(HttpStatusCode.OK, set.StatusCode);

        await tenant.OpenAi().GetChatClient("llm/gpt-4o-mini").CompleteChatAsync([new UserChatMessage("hi")]);
        await other.OpenAi().GetChatClient("llm/gpt-4o-mini").CompleteChatAsync([new UserChatMessage("hi")]);

        Assert.Equal(0.024m, (await tenant.UsageAsync()).Single().CostCents); // 9 × 1000 + 2 × 500 + 7 × 2000 per million
        Assert.Equal(0.00057m, (await other.UsageAsync()).Single().CostCents);
        var prices = await tenant.Admin.GetFromJsonAsync<JsonElement>("/integrations/llm-prices");
        var mini = prices.GetProperty("items").EnumerateArray().Single(p => p.GetProperty("model").GetString() == "gpt-4o-mini");
        Assert.Equal(("tenant", 1000m), (mini.GetProperty("source").GetString(), mini.GetProperty("input_cents_per_mtok").GetDecimal()));
        Assert.Equal(HttpStatusCode.BadRequest,
            (await tenant.Admin.PutAsJsonAsync("/integrations/llm-prices/x", new { input_cents_per_mtok = -1, output_cents_per_mtok = 0 })).StatusCode);
    }

    [Fact]
    public async Task Embeddings_answer_through_the_sdk_and_record_usage()
    {
        var tenant = await fixture.TenantAsync();
        var embeddings = tenant.OpenAi().GetEmbeddingClient("llm/text-embedding-3-small");

        var embedding = await embeddings.GenerateEmbeddingAsync("a sentence");

        Assert.Equal([0.25f, -0.5f, 0.75f], embedding.Value.ToFloats().ToArray());
        Assert.Single(fixture.Provider.CallsFor("text-embedding-3-small"), c => c.Path == "/v1/embeddings" && c.Authorization == $"Bearer {tenant.Secret}");
        var row = Assert.Single(await tenant.UsageAsync());
        Assert.Equal(("embeddings", "completed", 5L, 0L), (row.Endpoint, row.Status, row.PromptTokens, row.CompletionTokens));
        Assert.Equal(0.00001m, row.CostCents); // 5 tokens at 2 cents per million
        Assert.Equal(Requested.Select(s => $"llm.request.{s}"), await tenant.EventsAsync(row.Id));
    }

    [Fact]
    public async Task Tool_definitions_reach_the_provider_untouched_and_tool_calls_come_back_to_the_sdk()
    {
        var tenant = await fixture.TenantAsync();
        var chat = tenant.OpenAi().GetChatClient("llm/gpt-4o-tool");
        var options = new ChatCompletionOptions();
        options.Tools.Add(ChatTool.CreateFunctionTool("get_weather", "The weather in a city.",
            BinaryData.FromString("""{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}""")));

        ChatCompletion completion = await chat.CompleteChatAsync([new UserChatMessage("weather in Paris?")], options);

        Assert.Equal(ChatFinishReason.ToolCalls, completion.FinishReason);
        var call = Assert.Single(completion.ToolCalls);
        Assert.Equal(("get_weather", "{\"city\":\"Paris\"}"), (call.FunctionName, call.FunctionArguments.ToString()));
        var sent = Assert.Single(fixture.Provider.CallsFor("gpt-4o-tool"), c => c.Authorization == $"Bearer {tenant.Secret}");
        Assert.Equal("get_weather", sent.Body["tools"]![0]!["function"]!["name"]!.GetValue<string>());
        Assert.Equal("city", sent.Body["tools"]![0]!["function"]!["parameters"]!["required"]![0]!.GetValue<string>());

        // The tool's result goes back the same way.
        ChatCompletion answer = await tenant.OpenAi().GetChatClient("llm/gpt-4o").CompleteChatAsync(
            [new UserChatMessage("weather in Paris?"), new AssistantChatMessage(completion), new ToolChatMessage(call.Id, "sunny")], options);
        Assert.Equal("echo: sunny", answer.Content[0].Text);
        Assert.Equal(2, (await tenant.UsageAsync()).Count(r => r.Status == "completed"));
    }

    [Fact]
    public async Task Cancelling_a_stream_cancels_the_request_to_the_provider_and_records_what_was_streamed()
    {
        var tenant = await fixture.TenantAsync();
        var chat = tenant.OpenAi().GetChatClient("llm/gpt-4o-hang");
        using var cancel = new CancellationTokenSource();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var update in chat.CompleteChatStreamingAsync([new UserChatMessage("hi")], cancellationToken: cancel.Token))
            {
                cancel.Cancel(); // after the first chunk; the fake now waits 30 s before the next
            }
        });

        var sent = Assert.Single(fixture.Provider.CallsFor("gpt-4o-hang"), c => c.Authorization == $"Bearer {tenant.Secret}");
        Assert.Same(sent.Aborted.Task, await Task.WhenAny(sent.Aborted.Task, Task.Delay(TimeSpan.FromSeconds(10))));
        var row = Assert.Single(await tenant.UsageAsync(1));
        Assert.Equal(("failed", "cancelled", true), (row.Status, row.ErrorCode, row.TokensEstimated));
        Assert.True(row.PromptTokens > 0);
        Assert.Contains("llm.request.failed", await tenant.EventsAsync(row.Id));
    }

    [Fact]
    public async Task A_stream_the_provider_drops_ends_with_an_error_event_a_failed_row_and_an_incident()
    {
        var tenant = await fixture.TenantAsync();
        using var http = tenant.Http();
        var response = await http.PostAsJsonAsync("/v1/chat/completions", new
        {
            model = "llm/gpt-4o-drop",
            stream = true,
            messages = new[] { new { role = "user", content = "hi" } },
        });
        var events = await response.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.OK, response.StatusCode); // the answer had begun
        Assert.Contains("Hello", events, StringComparison.Ordinal);
        Assert.Contains("\"code\":\"upstream_error\"", events, StringComparison.Ordinal);
        var row = Assert.Single(await tenant.UsageAsync(1));
        Assert.Equal(("failed", "upstream_error", true), (row.Status, row.ErrorCode, row.TokensEstimated));
        Assert.NotNull(row.IncidentId);
        Assert.Equal("llm_failure", await OwnerSql.ScalarAsync<string>(fixture.ConnectionString,
            "SELECT kind FROM incidents WHERE tenant_id = @Id AND id = @IncidentId", new { tenant.Id, row.IncidentId }));
    }

    [Fact]
    public async Task A_failing_provider_is_retried_then_answered_502_with_one_incident_per_integration()
    {
        var tenant = await fixture.TenantAsync();
        var chat = tenant.OpenAi().GetChatClient("llm/gpt-4o-fail-500");

        var first = await Assert.ThrowsAsync<ClientResultException>(() => chat.CompleteChatAsync([new UserChatMessage("hi")]));
        await Assert.ThrowsAsync<ClientResultException>(() => chat.CompleteChatAsync([new UserChatMessage("again")]));

        Assert.Equal(502, first.Status);
        Assert.Contains("upstream_error", first.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(tenant.Secret, first.Message, StringComparison.Ordinal); // the provider echoed the key; the answer does not
        Assert.Equal(6, fixture.Provider.CallsFor("gpt-4o-fail-500").Count(c => c.Authorization == $"Bearer {tenant.Secret}")); // 3 attempts each
        var rows = await tenant.UsageAsync();
        Assert.All(rows, r => Assert.Equal(("failed", "upstream_error", 3, 500), (r.Status, r.ErrorCode!, r.Attempts, r.UpstreamStatus!.Value)));
        Assert.Equal(rows[0].IncidentId, rows[1].IncidentId);
        Assert.Equal(2, await OwnerSql.ScalarAsync<int>(fixture.ConnectionString,
            "SELECT occurrences FROM incidents WHERE tenant_id = @Id AND id = @IncidentId", new { tenant.Id, rows[0].IncidentId }));
    }

    [Fact]
    public async Task After_ten_failed_attempts_the_integrations_circuit_opens_and_the_provider_is_not_called()
    {
        var tenant = await fixture.TenantAsync();
        using var http = tenant.Http();
        var codes = new List<string?>();
        for (var i = 0; i < 5; i++)
        {
            var response = await http.PostAsJsonAsync("/v1/chat/completions", new { model = "llm/breaker-fail-500", messages = new[] { new { role = "user", content = "hi" } } });
            Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
            codes.Add((await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("error").GetProperty("code").GetString());
        }

        // Three attempts each for three requests, the fourth's first attempt opens the circuit (10 attempts, all failed).
        Assert.Equal(["upstream_error", "upstream_error", "upstream_error", "upstream_unreachable", "upstream_unreachable"], codes);
        Assert.Equal(10, fixture.Provider.CallsFor("breaker-fail-500").Count(c => c.Authorization == $"Bearer {tenant.Secret}"));
        var other = await fixture.TenantAsync(); // another integration's circuit is its own
        var fine = await other.Http().PostAsJsonAsync("/v1/chat/completions", new { model = "llm/gpt-4o-mini", messages = new[] { new { role = "user", content = "hi" } } });
        Assert.Equal(HttpStatusCode.OK, fine.StatusCode);
    }

    [Fact]
    public async Task The_providers_429_is_answered_429_with_its_retry_after_and_opens_no_incident()
    {
        var tenant = await fixture.TenantAsync();
        using var http = tenant.Http();
        var response = await http.PostAsJsonAsync("/v1/chat/completions", new { model = "llm/rate-429", messages = new[] { new { role = "user", content = "hi" } } });

        Assert.Equal(HttpStatusCode.TooManyRequests, response.StatusCode);
        Assert.Equal(TimeSpan.FromSeconds(30), response.Headers.RetryAfter!.Delta);
        var error = (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("error");
        Assert.Equal(("upstream_rate_limited", "rate_limit_error"), (error.GetProperty("code").GetString(), error.GetProperty("type").GetString()));
        var row = Assert.Single(await tenant.UsageAsync());
        Assert.Null(row.IncidentId);
        Assert.Equal(1, row.Attempts);
    }
}
