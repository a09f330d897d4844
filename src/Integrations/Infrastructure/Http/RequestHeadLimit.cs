using Integrations.Common;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace Integrations.Infrastructure.Http;

/// <summary>
/// Refuses an overlong request target (414 <c>uri_too_long</c>) or overlarge headers (431 <c>headers_too_large</c>) as
/// problem details. Kestrel refuses such requests itself, before any middleware runs and with an empty body, so its own
/// limits are set to twice these (<see cref="KestrelFactor"/>): what lies between is answered here; only what is larger
/// still gets Kestrel's bare answer.
/// </summary>
public static class RequestHeadLimit
{
    public const int MaxTargetBytes = 8 * 1024;
    public const int MaxHeaderBytes = 32 * 1024;
    public const int KestrelFactor = 2;

    public static Task Enforce(HttpContext context, RequestDelegate next)
    {
        var target = context.Features.Get<IHttpRequestFeature>()?.RawTarget?.Length
            ?? context.Request.Path.Value?.Length + context.Request.QueryString.Value?.Length ?? 0;
        if (target > MaxTargetBytes)
        {
            return Problems.WriteAsync(context, new Error("uri_too_long", 414, "URI too long.", $"The request target may be at most {MaxTargetBytes} bytes."));
        }
        var headers = 0;
        foreach (var (name, values) in context.Request.Headers)
        {
            foreach (var value in values) headers += name.Length + (value?.Length ?? 0) + 4;
        }
        if (headers > MaxHeaderBytes)
        {
            return Problems.WriteAsync(context, new Error("headers_too_large", 431, "Request headers too large.", $"The request's headers may be at most {MaxHeaderBytes} bytes."));
        }
        return next(context);
    }
}
