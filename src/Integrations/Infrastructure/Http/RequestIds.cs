using Microsoft.AspNetCore.Http;

namespace Integrations.Infrastructure.Http;

/// <summary>
/// <c>X-Request-Id</c>: the caller's own (1-128 visible ASCII characters) or a new one, echoed on every answer, named in
/// problem details (<c>request_id</c>) and in every log line of the request (<see cref="RequestLog"/>'s <c>RequestId</c> scope).
/// </summary>
public static class RequestIds
{
    public const string Header = "X-Request-Id";

    public static Task Apply(HttpContext context, RequestDelegate next)
    {
        var given = context.Request.Headers[Header].ToString();
        var id = given.Length is > 0 and <= 128 && given.All(c => c is >= '!' and <= '~') ? given : Guid.NewGuid().ToString("N");
        context.TraceIdentifier = id;
        context.Response.OnStarting(() =>
        {
            context.Response.Headers[Header] = id;
            return Task.CompletedTask;
        });
        return next(context);
    }
}
