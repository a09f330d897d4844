using Integrations.Common;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using MediatR;

namespace Integrations.Pipeline;

/// <summary>
/// For a state-changing request: on success, appends the handler's audit events and commits them with the
/// change in one transaction; on failure nothing commits. A successful audited request that recorded no
/// event is a programming error, not a silent gap in the trail.
/// </summary>
internal sealed class AuditBehavior<TRequest, TResponse>(TenantSession session, AuditTrail audit)
    : IPipelineBehavior<TRequest, TResponse>
    where TRequest : IOperation, IAudited
    where TResponse : IFallible<TResponse>
{
    public async Task<TResponse> Handle(TRequest request, CancellationToken cancellationToken, RequestHandlerDelegate<TResponse> next)
    {
        var response = await next();
        if (response.Error is not null)
        {
            await session.RollbackAsync();
            return response;
        }
        if (audit.Pending.Count == 0)
        {
            throw new InvalidOperationException($"The audited operation '{TRequest.Operation}' recorded no audit event.");
        }
        var connection = await session.ConnectionAsync(cancellationToken);
        await audit.FlushAsync(connection, TRequest.Operation, cancellationToken);
        await session.CommitAsync(cancellationToken);
        return response;
    }
}
