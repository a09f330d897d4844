using Integrations.Common;
using Integrations.Infrastructure.Audit;
using MediatR;

namespace Integrations.Pipeline;

/// <summary>
/// Outermost: the audit events a request writes, wherever in it they are made, are signed with this service's audit
/// key (<see cref="AuditKeys.Use"/>); work the request starts and leaves running keeps it.
/// </summary>
internal sealed class AuditKeysBehavior<TRequest, TResponse>(AuditKeys keys) : IPipelineBehavior<TRequest, TResponse>
    where TRequest : IOperation
    where TResponse : IFallible<TResponse>
{
    public async Task<TResponse> Handle(TRequest request, CancellationToken cancellationToken, RequestHandlerDelegate<TResponse> next)
    {
        using (AuditKeys.Use(keys))
        {
            return await next();
        }
    }
}
