using System.Collections.Concurrent;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Https;

namespace Integrations.Tests.Support;

/// <summary>
/// A local HashiCorp Vault speaking the subset of its HTTP API the service uses (the Vault binary is not available
/// here), shaped as Vault's API documentation gives it: KV version 2 reads (<c>GET /v1/{mount}/data/{path}</c> with
/// <c>X-Vault-Token</c>, answering <c>{"data":{"data":{...},"metadata":{...}}}</c>, 404 <c>{"errors":[]}</c> when absent,
/// 403 <c>{"errors":["permission denied"]}</c> for a token it does not know) and the AppRole login
/// (<c>POST /v1/auth/approle/login</c> with <c>{"role_id","secret_id"}</c>, answering <c>{"auth":{"client_token",
/// "lease_duration","renewable"}}</c>). Records every request with its body.
/// </summary>
public sealed class FakeHashiCorpVault : IAsyncDisposable
{
    public sealed record Request(string Method, string Path, IReadOnlyDictionary<string, string> Headers, string Body);

    private WebApplication _app = null!;
    private int _logins;

    public string Address { get; private set; } = "";

    public ConcurrentQueue<Request> Requests { get; } = new();

    /// <summary>"mount/path" → the secret's fields.</summary>
    public ConcurrentDictionary<string, Dictionary<string, object>> Secrets { get; } = new();

    /// <summary>Tokens Vault accepts (the static token and those AppRole logins issued and not revoked).</summary>
    public ConcurrentDictionary<string, bool> Tokens { get; } = new();

    public const string RoleId = "role-4c1f";
    public const string SecretId = "secret-9a7e";

    /// <summary>The lease AppRole logins give their tokens, in seconds.</summary>
    public int LeaseSeconds { get; set; } = 3600;

    public int Logins => _logins;

    /// <param name="https">Over TLS, as this configures it (e.g. <see cref="TestPki.ServeHttps"/>).</param>
    public static async Task<FakeHashiCorpVault> StartAsync(Action<HttpsConnectionAdapterOptions>? https = null)
    {
        var vault = new FakeHashiCorpVault();
        (vault._app, vault.Address) = await LoopbackServer.StartAsync(app => app.Run(vault.HandleAsync), https);
        return vault;
    }

    private async Task HandleAsync(HttpContext context)
    {
        var body = await new StreamReader(context.Request.Body).ReadToEndAsync();
        var path = context.Request.Path.Value!;
        Requests.Enqueue(new Request(context.Request.Method, path,
            context.Request.Headers.ToDictionary(h => h.Key.ToLowerInvariant(), h => h.Value.ToString()), body));

        if (context.Request.Method == "POST" && path == "/v1/auth/approle/login")
        {
            var login = JsonDocument.Parse(body).RootElement;
            if (login.GetProperty("role_id").GetString() != RoleId || login.GetProperty("secret_id").GetString() != SecretId)
            {
                context.Response.StatusCode = 400;
                await context.Response.WriteAsJsonAsync(new { errors = new[] { "invalid role or secret ID" } });
                return;
            }
            var token = $"hvs.approle-{Interlocked.Increment(ref _logins)}-{Guid.NewGuid():N}";
            Tokens[token] = true;
            await context.Response.WriteAsJsonAsync(new
            {
                request_id = Guid.NewGuid(),
                auth = new { client_token = token, accessor = Guid.NewGuid().ToString(), policies = new[] { "default", "integrations" }, lease_duration = LeaseSeconds, renewable = true },
            });
            return;
        }
        if (context.Request.Method == "GET" && path.StartsWith("/v1/", StringComparison.Ordinal) && path.Contains("/data/", StringComparison.Ordinal))
        {
            if (!Tokens.ContainsKey(context.Request.Headers["X-Vault-Token"].ToString()))
            {
                context.Response.StatusCode = 403;
                await context.Response.WriteAsJsonAsync(new { errors = new[] { "permission denied" } });
                return;
            }
            var rest = path["/v1/".Length..];
            var mount = rest[..rest.IndexOf('/')];
            var key = $"{mount}/{rest[(mount.Length + "/data/".Length)..]}";
            if (!Secrets.TryGetValue(key, out var data))
            {
                context.Response.StatusCode = 404;
                await context.Response.WriteAsJsonAsync(new { errors = Array.Empty<string>() });
                return;
            }
            await context.Response.WriteAsJsonAsync(new
            {
                request_id = Guid.NewGuid(),
                lease_id = "",
                renewable = false,
                lease_duration = 0,
                data = new { data, metadata = new { created_time = DateTimeOffset.UtcNow, deletion_time = "", destroyed = false, version = 3 } },
            });
            return;
        }
        context.Response.StatusCode = 404;
        await context.Response.WriteAsJsonAsync(new { errors = Array.Empty<string>() });
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
