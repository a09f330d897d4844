using Integrations.Common;
using MediatR;

namespace Integrations.Pipeline;

/// <summary>Refuses a request with no caller context, or whose caller lacks the operation's scope.</summary>
internal sealed class AuthorizationBehavior<TRequest, TResponse>(CallerContext caller) : IPipelineBehavior<TRequest, TResponse>
    where TRequest : IOperation
    where TResponse : IFallible<TResponse>
{
    public Task<TResponse> Handle(TRequest request, CancellationToken cancellationToken, RequestHandlerDelegate<TResponse> next)
    {
        if (caller.Current is not { } current)
        {
            return Task.FromResult(TResponse.Fail(Error.Unauthenticated("The request carries no caller context.")));
        }
        if (!current.Has(TRequest.Scope))
        {
            return Task.FromResult(TResponse.Fail(
                Error.Forbidden($"The operation '{TRequest.Operation}' needs the scope '{TRequest.Scope}'.")));
        }
        return next();
    }
}
