using Integrations.Common;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Vault;
using MediatR;

namespace Integrations.Pipeline;

/// <summary>
/// Innermost: for a request that declares <see cref="INeedsCredential"/>, resolves its reference (the one it carries,
/// or the one stored on its accessor's row) through the <see cref="CredentialResolver"/> and hands the secret to the
/// handler in <see cref="CredentialContext"/> for the handler's duration only. A refused resolution answers with its
/// error and the handler does not run. An accessor with no reference attached runs the handler with no credential.
/// </summary>
internal sealed class CredentialBehavior<TRequest, TResponse>(
    CredentialResolver resolver, CredentialContext credentials, TenantSession session)
    : IPipelineBehavior<TRequest, TResponse>
    where TRequest : IOperation, INeedsCredential
    where TResponse : IFallible<TResponse>
{
    public async Task<TResponse> Handle(TRequest request, CancellationToken cancellationToken, RequestHandlerDelegate<TResponse> next)
    {
        var accessor = request.CredentialAccessor;
        var reference = request.CredentialRef;
        if (reference is null && !accessor.IsSystem)
        {
            var connection = await session.ConnectionAsync(cancellationToken);
            var (found, stored) = await CredentialResolver.StoredReferenceAsync(connection, session.TenantId, accessor, cancellationToken);
            if (!found) return TResponse.Fail(Error.NotFound(accessor.Type.Replace('_', ' ')));
            reference = stored;
        }
        if (reference is null) return await next();

        var resolved = await resolver.ResolveAsync(accessor, reference, TRequest.Operation, cancellationToken);
        if (!resolved.IsSuccess) return TResponse.Fail(resolved.Error!);
        credentials.Set(resolved.Value);
        try
        {
            return await next();
        }
        finally
        {
            credentials.Clear();
        }
    }
}
