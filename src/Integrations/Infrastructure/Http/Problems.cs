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
        return TypedResults.Problem(ToProblemDetails(error, context));
    }

    public static Task WriteAsync(HttpContext context, Error error) =>
        error.ToHttp(context).ExecuteAsync(context);

    /// <summary>Maps a result to 200 with its value, or to the problem its failure names.</summary>
    public static IResult ToHttp<T>(this Result<T> result, HttpContext context, Func<T, IResult>? onSuccess = null) =>
        result.IsSuccess ? onSuccess?.Invoke(result.Value) ?? TypedResults.Ok(result.Value) : result.Error!.ToHttp(context);
}
