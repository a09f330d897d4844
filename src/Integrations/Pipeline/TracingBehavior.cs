using System.Diagnostics;
using Integrations.Common;
using Integrations.Infrastructure.Telemetry;
using MediatR;

namespace Integrations.Pipeline;

/// <summary>An activity per operation, and its duration and outcome as metrics.</summary>
internal sealed class TracingBehavior<TRequest, TResponse> : IPipelineBehavior<TRequest, TResponse>
    where TRequest : IOperation
    where TResponse : IFallible<TResponse>
{
    public async Task<TResponse> Handle(TRequest request, CancellationToken cancellationToken, RequestHandlerDelegate<TResponse> next)
    {
        using var activity = Telemetry.Source.StartActivity(TRequest.Operation, ActivityKind.Internal);
        activity?.SetTag("integrations.operation", TRequest.Operation);
        var started = Stopwatch.GetTimestamp();
        var outcome = "exception";
        try
        {
            var response = await next();
            outcome = response.Error?.Code ?? "ok";
            if (response.Error is { } error)
            {
                activity?.SetTag("integrations.error.code", error.Code);
                if (error.Status >= 500) activity?.SetStatus(ActivityStatusCode.Error, error.Code);
            }
            return response;
        }
        catch (Exception ex)
        {
            activity?.SetStatus(ActivityStatusCode.Error, ex.GetType().Name);
            throw;
        }
        finally
        {
            var tags = new TagList { { "operation", TRequest.Operation }, { "outcome", outcome } };
            Telemetry.OperationDuration.Record(Stopwatch.GetElapsedTime(started).TotalMilliseconds, tags);
            Telemetry.Operations.Add(1, tags);
        }
    }
}
