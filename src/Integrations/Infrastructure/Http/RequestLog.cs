using System.Collections;
using System.Diagnostics;
using Integrations.Common;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Integrations.Infrastructure.Http;

/// <summary>
/// One log line per request — method, route template, status, duration, operation, tenant — and a log scope that puts the
/// request id, the operation and the tenant on every line the request writes. Only what routing and the API key decided is
/// named: never the raw path or query, a header, or a body (so the host's own request scope, which names the raw path, is
/// switched off in Program).
/// </summary>
public sealed class RequestLog(RequestDelegate next, ILogger<RequestLog> logger)
{
    /// <summary>The route of a request no endpoint matched (its raw path is the caller's text, not ours to log).</summary>
    public const string Unmatched = "(unmatched)";

    /// <summary>The item a branch that is no endpoint (the metrics scrape) names its fixed route with.</summary>
    public const string RouteItem = "Integrations.Route";

    public async Task InvokeAsync(HttpContext context)
    {
        var started = Stopwatch.GetTimestamp();
        var endpoint = context.GetEndpoint();
        var scope = new RequestScope(context.TraceIdentifier, endpoint?.Metadata.GetMetadata<IEndpointNameMetadata>()?.EndpointName,
            context.RequestServices.GetRequiredService<CallerContext>());
        using (logger.BeginScope(scope))
        {
            var status = StatusCodes.Status500InternalServerError;
            try
            {
                await next(context);
                status = context.Response.StatusCode;
            }
            finally
            {
                logger.LogInformation("{Method} {Route} {Status} {DurationMs} ms operation={Operation} tenant={Tenant}",
                    context.Request.Method, (endpoint as RouteEndpoint)?.RoutePattern.RawText ?? context.Items[RouteItem] as string ?? Unmatched, status,
                    Math.Round(Stopwatch.GetElapsedTime(started).TotalMilliseconds, 1), scope.Operation, scope.Tenant);
            }
        }
    }

    /// <summary>
    /// Read when a line is written, so lines after authentication carry the tenant; it holds the request's caller, not
    /// the request, so an exporter that formats a line later reads nothing that was recycled.
    /// </summary>
    private sealed class RequestScope(string requestId, string? operation, CallerContext caller) : IReadOnlyList<KeyValuePair<string, object?>>
    {
        public string? Operation { get; } = operation;

        public string? Tenant => caller.Current?.TenantId;

        public int Count => 3;

        public KeyValuePair<string, object?> this[int index] => index switch
        {
            0 => new("RequestId", requestId),
            1 => new("Operation", Operation),
            2 => new("Tenant", Tenant),
            _ => throw new ArgumentOutOfRangeException(nameof(index)),
        };

        public IEnumerator<KeyValuePair<string, object?>> GetEnumerator()
        {
            for (var i = 0; i < Count; i++) yield return this[i];
        }

        IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

        public override string ToString() => $"RequestId:{requestId} Operation:{Operation} Tenant:{Tenant}";
    }
}
