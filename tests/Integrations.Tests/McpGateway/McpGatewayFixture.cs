using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Integrations.Common;
using Integrations.Tests.Support;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using ModelContextProtocol.Client;

namespace Integrations.Tests.McpGateway;

/// <summary>
/// The service on a real port (Kestrel), so MCP clients of every kind — the C# SDK, a node script, the Inspector's
/// CLI — reach <c>/mcp</c> as an agent would.
/// </summary>
public sealed class McpGatewayFixture : IAsyncLifetime
{
    public ApiFactory Api { get; private set; } = null!;

    public Uri Address { get; private set; } = null!;

    public Uri McpEndpoint => new(Address, "/mcp");

    public async Task InitializeAsync() => (Api, Address) = await StartReplicaAsync();

    /// <summary>A service replica on a port of its own, on the test database.</summary>
    public static async Task<(ApiFactory Api, Uri Address)> StartReplicaAsync()
    {
        var api = await ApiFactory.StartAsync();
        api.UseKestrel(0);
        api.StartServer();
        return (api, new Uri(api.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First()));
    }

    public async Task DisposeAsync() => await Api.DisposeAsync();

    /// <summary>A new tenant's key (all scopes unless given) and a REST client that carries it.</summary>
    public async Task<(string Key, HttpClient Client)> TenantAsync(params string[] scopes) =>
        await KeyAndClientAsync(TestEnvironment.NewTenant(), scopes);

    public async Task<(string Key, HttpClient Client)> KeyAndClientAsync(string tenantId, params string[] scopes)
    {
        var key = (await Api.KeyForAsync(tenantId, scopes)).Key;
        var rest = new HttpClient { BaseAddress = Address };
        rest.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return (key, rest);
    }

    public Task<McpClient> McpClientAsync(string key, IDictionary<string, string>? headers = null, string? protocolVersion = null) =>
        McpClientAsync(McpEndpoint, key, headers, protocolVersion);

    public static Task<McpClient> McpClientAsync(Uri endpoint, string key, IDictionary<string, string>? headers = null, string? protocolVersion = null)
    {
        var all = new Dictionary<string, string>(headers ?? new Dictionary<string, string>()) { ["Authorization"] = $"Bearer {key}" };
        var transport = new HttpClientTransport(new HttpClientTransportOptions
        {
            Endpoint = endpoint,
            TransportMode = HttpTransportMode.StreamableHttp,
            AdditionalHeaders = all,
        });
        return McpClient.CreateAsync(transport, new McpClientOptions { ProtocolVersion = protocolVersion });
    }

    /// <summary>Registers the reference server for the tenant of <paramref name="rest"/>; answers its id and its tools by name.</summary>
    public static async Task<(string ServerId, Dictionary<string, JsonElement> Tools)> RegisterAsync(HttpClient rest, string name, Uri url)
    {
        var response = await rest.PostAsJsonAsync("/integrations/mcp-servers", new { name, url = url.ToString() });
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.True(response.IsSuccessStatusCode, body.ToString());
        return (body.GetProperty("server").GetProperty("id").GetString()!,
            body.GetProperty("tools").EnumerateArray().ToDictionary(t => t.GetProperty("name").GetString()!, t => t.Clone()));
    }

    public static string[] AllScopes => [.. Scopes.All];
}
