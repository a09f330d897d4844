using Integrations.Common;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Integrations.Infrastructure.Http;

/// <summary>
/// Bad requests the framework detects (malformed JSON, oversized bodies) keep their status with a clear code;
/// anything else is a 500 with the trace id and never the exception's text.
/// </summary>
internal sealed class UnexpectedExceptionHandler(ILogger<UnexpectedExceptionHandler> logger) : IExceptionHandler
{
    public async ValueTask<bool> TryHandleAsync(HttpContext context, Exception exception, CancellationToken ct)
    {
        var error = exception switch
        {
            BadHttpRequestException { StatusCode: 413 } =>
                new Error("payload_too_large", 413, "Request body too large.", $"The body may be at most {RequestBodyLimit.MaxBytes} bytes."),
            BadHttpRequestException bad when bad.InnerException is System.Text.Json.JsonException =>
                new Error("malformed_request", 400, "Malformed request.", "The body is not valid JSON for this operation."),
            BadHttpRequestException bad =>
                new Error("malformed_request", bad.StatusCode, "Malformed request.", bad.Message),
            OperationCanceledException when context.RequestAborted.IsCancellationRequested => null,
            // The database is unreachable: nothing the caller did wrong, and nothing to retry at once.
            _ when Pipeline.Governance.OutcomeJournal.IsUnreachable(exception) => Error.Unavailable(
                "The service cannot reach its database right now. Try again later.", Pipeline.Governance.GovernedCallStage.RetryAfter),
            _ => null,
        };
        if (error is null)
        {
            if (context.RequestAborted.IsCancellationRequested) return true;
            logger.LogError(exception, "Unhandled exception for {Method} {Path}", context.Request.Method, context.Request.Path);
            error = new Error("internal_error", 500, "Internal error.", "An unexpected error occurred. Quote the trace id when reporting it.");
        }
        await Problems.WriteAsync(context, error);
        return true;
    }
}
