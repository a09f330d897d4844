using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace Integrations.Tests.LlmGateway;

/// <summary>Each provider is asked at its own URL with its own key header; the body goes as the client sent it but for the model.</summary>
public sealed class ProviderDialectTests(LlmGatewayFixture fixture) : IClassFixture<LlmGatewayFixture>
{
    private static object Chat(string model) => new
    {
        model,
        messages = new[] { new { role = "user", content = "hi" } },
        vendor_extension = new { keep = new[] { 1, 2 } },
        seed = 12345678901234567L,
    };

    [Fact]
    public async Task Azure_openai_is_asked_at_its_deployment_url_with_api_key_and_api_version()
    {
        var tenant = await fixture.TenantAsync(name: "plain");
        await tenant.IntegrationAsync("azure", provider: "azure_openai", baseUrl: fixture.Provider.Root);
        using var http = tenant.Http();

        var response = await http.PostAsJsonAsync("/v1/chat/completions", Chat("azure/gpt-4o-azure"));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var sent = Assert.Single(fixture.Provider.CallsFor("gpt-4o-azure"), c => c.ApiKeyHeader == tenant.Secret);
        Assert.Equal(("/openai/deployments/gpt-4o-azure/chat/completions", "?api-version=2024-10-21", null),
            (sent.Path, sent.Query, sent.Authorization));
        Assert.Equal("azure_openai", (await tenant.UsageAsync()).Single().Provider);
    }

    [Fact]
    public async Task Google_is_asked_at_its_openai_compatible_endpoint_and_unknown_fields_pass_untouched()
    {
        var tenant = await fixture.TenantAsync(name: "plain");
        await tenant.IntegrationAsync("gemini", provider: "google", baseUrl: fixture.Provider.BaseUrl);
        using var http = tenant.Http();

        var response = await http.PostAsJsonAsync("/v1/chat/completions", Chat("gemini/gemini-2.5-flash"));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var sent = Assert.Single(fixture.Provider.CallsFor("gemini-2.5-flash"), c => c.Authorization == $"Bearer {tenant.Secret}");
        Assert.Equal("/v1/openai/chat/completions", sent.Path);
        Assert.Equal("""{"keep":[1,2]}""", sent.Body["vendor_extension"]!.ToJsonString());
        Assert.Equal("12345678901234567", sent.Body["seed"]!.ToJsonString());
        var answer = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal("echo: hi", answer.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
        Assert.Equal(0.002035m, (await tenant.UsageAsync()).Single().CostCents); // 9 × 30 + 2 × 7.5 + 7 × 250 cents per million tokens
    }
}
