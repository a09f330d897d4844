using System.Security.Claims;
using System.Text.Encodings.Web;
using Integrations.Common;
using Integrations.Infrastructure.Http;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Integrations.Infrastructure.Security;

/// <summary>
/// Reads the API key from <c>Authorization: Bearer</c> (or <c>X-Api-Key</c>), fills the request's
/// <see cref="CallerContext"/>, and answers 401/403 as problem details.
/// </summary>
public sealed class ApiKeyAuthenticationHandler(
    IOptionsMonitor<AuthenticationSchemeOptions> options, ILoggerFactory logger, UrlEncoder encoder, ApiKeys apiKeys)
    : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
{
    public const string SchemeName = "ApiKey";
    public const string TenantClaim = "tenant";
    public const string ScopeClaim = "scope";

    protected override async Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        var key = ReadKey(Request);
        if (key is null) return AuthenticateResult.NoResult();

        var (caller, refusal) = await apiKeys.CheckAsync(key, Context.RequestAborted);
        if (caller is null) return AuthenticateResult.Fail(refusal ?? "The API key is not valid or was revoked.");

        Context.RequestServices.GetRequiredService<CallerContext>().Set(caller);
        var claims = new List<Claim> { new(ClaimTypes.NameIdentifier, caller.Actor), new(TenantClaim, caller.TenantId) };
        claims.AddRange(caller.Scopes.Select(s => new Claim(ScopeClaim, s)));
        var principal = new ClaimsPrincipal(new ClaimsIdentity(claims, SchemeName));
        return AuthenticateResult.Success(new AuthenticationTicket(principal, SchemeName));
    }

    protected override async Task HandleChallengeAsync(AuthenticationProperties properties)
    {
        var refusal = (await HandleAuthenticateOnceSafeAsync()).Failure?.Message;
        var keyGiven = ReadKey(Request) is not null;
        Response.Headers.WWWAuthenticate = keyGiven ? "Bearer realm=\"integrations\", error=\"invalid_token\"" : "Bearer realm=\"integrations\"";
        await Problems.WriteAsync(Context, Error.Unauthenticated(
            keyGiven ? refusal ?? "The API key is not valid or was revoked." : "Send an API key as 'Authorization: Bearer <key>'."));
    }

    protected override Task HandleForbiddenAsync(AuthenticationProperties properties) =>
        Problems.WriteAsync(Context, Error.Forbidden("The API key does not allow this operation."));

    private static string? ReadKey(HttpRequest request)
    {
        var authorization = request.Headers.Authorization.ToString();
        if (authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)) return authorization["Bearer ".Length..].Trim();
        var header = request.Headers["X-Api-Key"].ToString();
        return header.Length > 0 ? header.Trim() : null;
    }
}
