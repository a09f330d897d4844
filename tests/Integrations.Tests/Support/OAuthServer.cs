using System.Collections.Concurrent;
using System.Text.Json;

namespace Integrations.Tests.Support;

/// <summary>
/// A real OAuth 2.0 server (oauth2-mock-server from npm, through tests/fixtures/oauth-server.mjs) as a child process:
/// its issuer URL, and each token request it saw (grant type, scope, audience, client id, whether the client authenticated).
/// </summary>
public sealed class OAuthServer : IAsyncDisposable
{
    public sealed record TokenRequest(
        string? GrantType, string? Scope, string? Audience, string? ClientId, bool Authenticated, string? ContentType,
        string? RefreshToken = null, string? IssuedRefreshToken = null);

    private static readonly JsonSerializerOptions SnakeCase = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    private FixtureProcess _process = null!;

    public Uri Issuer { get; private set; } = null!;

    public string TokenUrl => new Uri(Issuer, "/token").ToString();

    public ConcurrentQueue<TokenRequest> Requests { get; } = new();

    /// <summary>
    /// The token requests seen once there are at least <paramref name="count"/> (the server logs each one after it answers,
    /// so the line can arrive after the answer), waiting up to ten seconds; then exactly that many are expected.
    /// </summary>
    public async Task<IReadOnlyList<TokenRequest>> RequestsAsync(int count)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (Requests.Count < count && DateTime.UtcNow < deadline) await Task.Delay(20);
        await Task.Delay(50); // a request beyond the expected ones would show now
        var seen = Requests.ToList();
        Assert.Equal(count, seen.Count);
        return seen;
    }

    public static async Task<OAuthServer> StartAsync(string clientId, string clientSecret, int expiresInSeconds = 3600)
    {
        var server = new OAuthServer();
        server._process = await FixtureProcess.StartAsync("oauth-server.mjs", "oauth2-mock-server",
            ["--client-id", clientId, "--client-secret", clientSecret, "--expires-in", expiresInSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture)],
            line => { if (line.StartsWith('{')) server.Requests.Enqueue(JsonSerializer.Deserialize<TokenRequest>(line, SnakeCase)!); });
        server.Issuer = new Uri(server._process.Address);
        return server;
    }

    public ValueTask DisposeAsync() => _process.DisposeAsync();
}
