using System.Diagnostics;
using Integrations.Common;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Mvc;

namespace Integrations.Infrastructure.Http;

/// <summary>The one place an <see cref="Error"/> becomes an RFC 9457 problem response.</summary>
public static class Problems
{
    public static ProblemDetails ToProblemDetails(Error error, HttpContext context)
    {
        var problem = new ProblemDetails
        {
            Status = error.Status,
            Title = error.Title,
            Detail = error.Detail,
            Type = $"https://integrations.dev/problems/{error.Code.Replace('_', '-')}",
            Instance = context.Request.Path,
        };
        problem.Extensions["code"] = error.Code;
        if (error.FieldErrors is not null) problem.Extensions["errors"] = error.FieldErrors;
        if (error.Extensions is not null)
        {
            foreach (var (key, value) in error.Extensions) problem.Extensions[key] = value;
        }
        problem.Extensions["trace_id"] = Activity.Current?.TraceId.ToString() ?? context.TraceIdentifier;
        problem.Extensions["request_id"] = context.TraceIdentifier;
        return problem;
    }

    public static IResult ToHttp(this Error error, HttpContext context)
    {
        if (error.Extensions?.TryGetValue("retry_after_seconds", out var retryAfter) == true)
        {
            context.Response.Headers.RetryAfter = retryAfter?.ToString();
        }
        return IsAnthropicSurface(context) ? TypedResults.Json(ToAnthropicError(error, context), statusCode: error.Status)
            : IsOpenAiSurface(context) ? TypedResults.Json(ToOpenAiError(error, context), statusCode: error.Status)
            : TypedResults.Problem(ToProblemDetails(error, context));
    }

    /// <summary>
    /// The LLM gateway's routes (<c>/v1/...</c>) answer errors in OpenAI's shape, because the clients pointed at them
    /// (the OpenAI SDKs, LangChain, ...) read only that: <c>{"error": {"message", "type", "param", "code"}}</c>, with
    /// the stable code as <c>code</c> and this service's extensions (<c>invocation_id</c>, <c>rule</c>, <c>reset_at</c>, ...) beside them.
    /// </summary>
    public static bool IsOpenAiSurface(HttpContext context) => context.Request.Path.StartsWithSegments("/v1");

    /// <summary>Anthropic's Messages route answers Anthropic's shape: <c>{"type": "error", "error": {"type", "message", ...}}</c>, the same fields as the OpenAI one beside them.</summary>
    public static bool IsAnthropicSurface(HttpContext context) => context.Request.Path.StartsWithSegments("/v1/messages");

    public static Dictionary<string, object?> ToAnthropicError(Error error, HttpContext context)
    {
        var body = (Dictionary<string, object?>)ToOpenAiError(error, context)["error"]!;
        body["type"] = error.Status switch
        {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            >= 500 => "api_error",
            _ => "invalid_request_error",
        };
        return new Dictionary<string, object?> { ["type"] = "error", ["error"] = body };
    }

    public static Dictionary<string, object?> ToOpenAiError(Error error, HttpContext context)
    {
        var body = new Dictionary<string, object?>
        {
            ["message"] = error.Detail ?? error.Title,
            ["type"] = error.Status switch
            {
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                429 => "rate_limit_error",
                >= 500 => "api_error",
                _ => "invalid_request_error",
            },
            ["param"] = error.FieldErrors?.Keys.FirstOrDefault(),
            ["code"] = error.Code,
        };
        if (error.FieldErrors is not null) body["errors"] = error.FieldErrors;
        foreach (var (key, value) in error.Extensions ?? new Dictionary<string, object?>()) body.TryAdd(key, value);
        body["request_id"] = context.TraceIdentifier;
        return new Dictionary<string, object?> { ["error"] = body };
    }

    public static Task WriteAsync(HttpContext context, Error error) =>
        error.ToHttp(context).ExecuteAsync(context);

    /// <summary>Maps a result to 200 with its value, or to the problem its failure names.</summary>
    public static IResult ToHttp<T>(this Result<T> result, HttpContext context, Func<T, IResult>? onSuccess = null) =>
        result.IsSuccess ? onSuccess?.Invoke(result.Value) ?? TypedResults.Ok(result.Value) : result.Error!.ToHttp(context);
}
