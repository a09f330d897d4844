using System.Net.Http.Json;
using System.Text.Json;

namespace Integrations.Tests.Connectors;

/// <summary>Requests the connector tests repeat: storing a credential, registering a manifest, creating a connection.</summary>
internal static class ConnectorTestKit
{
    public static async Task<JsonElement> JsonAsync(HttpResponseMessage response, int? expected = null)
    {
        var text = await response.Content.ReadAsStringAsync();
        if (expected is { } status) Assert.True((int)response.StatusCode == status, $"{(int)response.StatusCode}: {text}");
        return text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone();
    }

    public static async Task<string> StoreCredentialAsync(HttpClient rest, object credential)
    {
        var stored = await JsonAsync(await rest.PostAsJsonAsync("/credentials", credential), 201);
        return stored.GetProperty("reference").GetString()!;
    }

    public static async Task<JsonElement> CreateConnectionAsync(HttpClient rest, object connection) =>
        await JsonAsync(await rest.PostAsJsonAsync("/connections", connection), 201);

    public static Task<HttpResponseMessage> InvokeAsync(HttpClient rest, JsonElement connection, string action, object arguments) =>
        rest.PostAsJsonAsync($"/connections/{connection.GetProperty("id").GetString()}/actions/{action}/invoke", new { arguments });

    /// <summary>A manifest for the http connector with a read action (<c>get_item</c>), a write action (<c>create_item</c>) and a critical one.</summary>
    public static object CrmManifest(string name, string version = "1.0.0", string description = "Acme CRM") => new
    {
        name,
        version,
        description,
        connector = "http",
        configuration = new { type = "object" },
        credential_types = new[] { "bearer_token", "basic_auth", "api_key", "oauth2_client_credentials" },
        actions = new object[]
        {
            new
            {
                name = "get_item",
                description = "Read one item.",
                input_schema = new
                {
                    type = "object",
                    required = new[] { "id" },
                    properties = new { id = new { type = "string" }, fields = new { type = "string" }, trace = new { type = "string" } },
                },
                output = "The item as JSON.",
                risk_level = "low",
                access = "read",
                request = new
                {
                    method = "GET",
                    path = "/items/{id}",
                    query = new Dictionary<string, string> { ["fields"] = "{fields}", ["q"] = "id:{id}" },
                    headers = new Dictionary<string, string> { ["X-Trace"] = "{trace}" },
                },
            },
            new
            {
                name = "create_item",
                description = "Create an item.",
                input_schema = new
                {
                    type = "object",
                    required = new[] { "title", "count" },
                    properties = new { title = new { type = "string" }, count = new { type = "integer" }, tags = new { type = "array" } },
                    additionalProperties = false,
                },
                output = "The created item.",
                risk_level = "medium",
                access = "write",
                request = new { method = "POST", path = "/items", body = new { title = "{title}", count = "{count}", tags = "{tags}", note = "made by {title}" } },
            },
            new
            {
                name = "purge_items",
                description = "Delete every item.",
                input_schema = new { type = "object" },
                output = "Nothing.",
                risk_level = "critical",
                access = "write",
                request = new { method = "DELETE", path = "/items" },
            },
            new
            {
                name = "fail",
                description = "Always fails upstream.",
                input_schema = new { type = "object" },
                output = "Nothing.",
                risk_level = "low",
                access = "read",
                request = new { method = "GET", path = "/fail" },
            },
        },
    };
}
