using Integrations.Common;
using MediatR;

namespace Integrations.Pipeline.Governance;

/// <summary>Runs a governed call's handler inside the <see cref="GovernedCallStage"/>, with the kind registered for the request.</summary>
internal sealed class GovernedCallBehavior<TRequest, TResponse>(IGovernedCallKind<TRequest> kind, GovernedCallStage stage)
    : IPipelineBehavior<TRequest, TResponse>
    where TRequest : IGovernedCall
    where TResponse : IFallible<TResponse>
{
    public Task<TResponse> Handle(TRequest request, CancellationToken cancellationToken, RequestHandlerDelegate<TResponse> next) =>
        kind.GovernAsync(stage, request, next, cancellationToken);
}
