using System.Security.Cryptography;
using Integrations.Common;
using Integrations.Infrastructure.Security;
using Microsoft.AspNetCore.DataProtection;

namespace Integrations.Api.AdminConsole;

/// <summary>
/// The console's sign-in: the API key a person types is checked once and exchanged for a cookie that holds only the
/// key's id, sealed by data protection with an expiry. The key itself never reaches the browser again; every request
/// asks <see cref="ApiKeys"/> about the id, so a revoked or expired key (or changed scopes) takes effect at the next page.
/// </summary>
public sealed class ConsoleSession(IDataProtectionProvider protection, ApiKeys apiKeys, TimeProvider time)
{
    public const string CookieName = "integrations_console";

    /// <summary>How long a sign-in lasts; signing in again starts a new one.</summary>
    public static readonly TimeSpan Lifetime = TimeSpan.FromHours(8);

    private readonly ITimeLimitedDataProtector _protector =
        protection.CreateProtector("Integrations.Console.Session.v1").ToTimeLimitedDataProtector();

    /// <summary>Checks the key and, when it is valid, sets the session cookie; answers why it is refused otherwise.</summary>
    public async Task<ApiKeyCheck> SignInAsync(HttpContext http, string key)
    {
        var check = await apiKeys.CheckAsync(key.Trim(), http.RequestAborted);
        if (check.Caller is null) return check;
        var keyId = ApiKeys.KeyIdOf(check.Caller.Actor) ?? throw new InvalidOperationException("An API key's actor names its id.");
        var ticket = _protector.Protect(keyId.ToString("N"), time.GetUtcNow() + Lifetime);
        http.Response.Cookies.Append(CookieName, ticket, CookieOptions(http, Lifetime));
        return check;
    }

    public static void SignOut(HttpContext http) => http.Response.Cookies.Delete(CookieName, CookieOptions(http, null));

    /// <summary>The caller the request's session stands for now, or null (no cookie, a forged or expired one, a revoked key).</summary>
    public async Task<Caller?> CallerAsync(HttpContext http)
    {
        if (!http.Request.Cookies.TryGetValue(CookieName, out var ticket) || string.IsNullOrEmpty(ticket)) return null;
        string keyId;
        try
        {
            keyId = _protector.Unprotect(ticket, out _);
        }
        catch (CryptographicException)
        {
            return null; // forged, altered, expired, or sealed with a key this service no longer has
        }
        if (!Guid.TryParseExact(keyId, "N", out var id)) return null;
        return (await apiKeys.CheckIdAsync(id, http.RequestAborted)).Caller;
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
