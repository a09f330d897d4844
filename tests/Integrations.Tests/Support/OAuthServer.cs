using System.Collections.Concurrent;
using System.Diagnostics;
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

    private readonly Process _process;

    private OAuthServer(Process process) => _process = process;

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
        var fixtures = Path.Combine(TestEnvironment.RepositoryRoot(), "tests", "fixtures");
        if (!Directory.Exists(Path.Combine(fixtures, "node_modules", "oauth2-mock-server")))
        {
            throw new InvalidOperationException("tests/fixtures/node_modules has no oauth2-mock-server: run ./build.sh test (it runs npm ci there).");
        }
        var start = new ProcessStartInfo("node") { WorkingDirectory = fixtures, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in new[] { "oauth-server.mjs", "--client-id", clientId, "--client-secret", clientSecret, "--expires-in", expiresInSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture) })
        {
            start.ArgumentList.Add(arg);
        }
        var server = new OAuthServer(Process.Start(start)!);
        var ready = new TaskCompletionSource<Uri>(TaskCreationOptions.RunContinuationsAsynchronously);
        var errors = new ConcurrentQueue<string>();
        server._process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            if (e.Data.StartsWith("listening ", StringComparison.Ordinal)) ready.TrySetResult(new Uri(e.Data["listening ".Length..]));
            else if (e.Data.StartsWith('{')) server.Requests.Enqueue(JsonSerializer.Deserialize<TokenRequest>(e.Data, SnakeCase)!);
        };
        server._process.ErrorDataReceived += (_, e) => { if (e.Data is not null) errors.Enqueue(e.Data); };
        server._process.BeginOutputReadLine();
        server._process.BeginErrorReadLine();
        var started = await Task.WhenAny(ready.Task, Task.Delay(TimeSpan.FromSeconds(20)));
        if (started != ready.Task) throw new InvalidOperationException("oauth-server.mjs did not start: " + string.Join('\n', errors));
        server.Issuer = await ready.Task;
        return server;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        await _process.WaitForExitAsync();
        _process.Dispose();
    }
}
