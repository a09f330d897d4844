using System.Security.Cryptography;
using Dapper;
using Integrations.Common;
using Integrations.Infrastructure.Security;
using Microsoft.AspNetCore.DataProtection;
using Npgsql;

namespace Integrations.Api.AdminConsole;

/// <summary>
/// The console's sign-in: the API key a person types is checked once and exchanged for a session kept on the server
/// (<c>console_sessions</c>, which names the key's id) and a cookie that holds only the session's id, sealed by data
/// protection with an expiry. The key itself never reaches the browser again. Every request asks whether the session is
/// still live and then asks <see cref="ApiKeys"/> about its key, so signing out (which ends the session on the server,
/// making any copy of the cookie worthless) and a revoked or expired key (or changed scopes) take effect at the next page.
/// </summary>
public sealed class ConsoleSession(IDataProtectionProvider protection, ApiKeys apiKeys, NpgsqlDataSource dataSource, TimeProvider time)
{
    public const string CookieName = "integrations_console";

    /// <summary>How long a sign-in lasts; signing in again starts a new one.</summary>
    public static readonly TimeSpan Lifetime = TimeSpan.FromHours(8);

    private readonly ITimeLimitedDataProtector _protector =
        protection.CreateProtector("Integrations.Console.Session.v2").ToTimeLimitedDataProtector();

    /// <summary>Checks the key and, when it is valid, starts a session and sets its cookie; answers why it is refused otherwise.</summary>
    public async Task<ApiKeyCheck> SignInAsync(HttpContext http, string key)
    {
        var check = await apiKeys.CheckAsync(key.Trim(), http.RequestAborted);
        if (check.Caller is null) return check;
        var keyId = ApiKeys.KeyIdOf(check.Caller.Actor) ?? throw new InvalidOperationException("An API key's actor names its id.");
        var sessionId = Ids.New();
        var expires = time.GetUtcNow() + Lifetime;
        await using (var connection = await dataSource.OpenConnectionAsync(http.RequestAborted))
        {
            await connection.ExecuteAsync(new CommandDefinition("SELECT console_session_start(@sessionId, @keyId, @expires)",
                new { sessionId, keyId, expires }, cancellationToken: http.RequestAborted));
        }
        http.Response.Cookies.Append(CookieName, _protector.Protect(sessionId.ToString("N"), expires), CookieOptions(http, Lifetime));
        return check;
    }

    /// <summary>Ends the request's session on the server (a copy of its cookie stops working) and clears the cookie.</summary>
    public async Task SignOutAsync(HttpContext http)
    {
        if (SessionIdOf(http) is { } sessionId)
        {
            await using var connection = await dataSource.OpenConnectionAsync(http.RequestAborted);
            await connection.ExecuteAsync(new CommandDefinition("SELECT console_session_end(@sessionId)", new { sessionId },
                cancellationToken: http.RequestAborted));
        }
        http.Response.Cookies.Delete(CookieName, CookieOptions(http, null));
    }

    /// <summary>
    /// The caller the request's session stands for now, or null (no cookie, a forged or expired one, a session that was
    /// ended, a revoked key).
    /// </summary>
    public async Task<Caller?> CallerAsync(HttpContext http)
    {
        if (SessionIdOf(http) is not { } sessionId) return null;
        Guid? keyId;
        await using (var connection = await dataSource.OpenConnectionAsync(http.RequestAborted))
        {
            keyId = await connection.ExecuteScalarAsync<Guid?>(new CommandDefinition("SELECT console_session_key(@sessionId)",
                new { sessionId }, cancellationToken: http.RequestAborted));
        }
        return keyId is { } id ? (await apiKeys.CheckIdAsync(id, http.RequestAborted)).Caller : null;
    }

    private Guid? SessionIdOf(HttpContext http)
    {
        if (!http.Request.Cookies.TryGetValue(CookieName, out var ticket) || string.IsNullOrEmpty(ticket)) return null;
        try
        {
            return Guid.TryParseExact(_protector.Unprotect(ticket, out _), "N", out var id) ? id : null;
        }
        catch (CryptographicException)
        {
            return null; // forged, altered, expired, or sealed with a key this service no longer has
        }
    }

    private static CookieOptions CookieOptions(HttpContext http, TimeSpan? maxAge) => new()
    {
        HttpOnly = true,
        SameSite = SameSiteMode.Strict,
        Secure = http.Request.IsHttps,
        Path = ConsoleEndpoints.Root,
        IsEssential = true,
        MaxAge = maxAge,
    };
}
