using System.Security.Cryptography;
using Dapper;
using FluentValidation;
using Integrations.Common;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using Integrations.Infrastructure.Vault;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.Credentials;

public static class RotateCredential
{
    /// <summary>
    /// The new secret, in the fields of the credential's type (see credentials.store); <c>allowed_hosts</c>, when
    /// given, replaces the hosts the new secret may be sent to (omitted: unchanged).
    /// </summary>
    public sealed record Body(
        string? Secret = null,
        string? Username = null,
        string? Password = null,
        IReadOnlyDictionary<string, string>? Fields = null,
        IReadOnlyList<string>? AllowedHosts = null) : Credential.ISecretFields
    {
        public override string ToString() => "RotateCredential.Body(secret redacted)";
    }

    public sealed record Command(Guid Id, Body NewSecret) : IOperation<Credential.Response>, IAudited
    {
        public static string Operation => "credentials.rotate";
        public static string Scope => Scopes.Write;
    }

    internal sealed class Validator : AbstractValidator<Command>
    {
        public Validator()
        {
            RuleFor(x => x.NewSecret).NotNull().WithMessage("A body with the new secret is required.");
            RuleFor(x => x.NewSecret.AllowedHosts).ValidAllowedHosts().OverridePropertyName("AllowedHosts").When(x => x.NewSecret is not null);
        }
    }

    /// <summary>
    /// The row is replaced by version + 1 under a fresh data key; the old version's ciphertext is gone, and since the
    /// version is bound into the encryption, old bytes put back into the row do not decrypt either.
    /// </summary>
    internal sealed class Handler(TenantSession session, AuditTrail audit, VaultCrypto crypto) : IRequestHandler<Command, Result<Credential.Response>>
    {
        private const string LockSql = """
            SELECT type, version FROM credentials
            WHERE tenant_id = @TenantId AND id = @Id AND deleted_at IS NULL
            FOR UPDATE
            """;

        private const string UpdateSql = $"""
            UPDATE credentials SET version = @Version, ciphertext = @Ciphertext, nonce = @Nonce, tag = @Tag,
                wrapped_key = @WrappedKey, key_id = @KeyId, rotated_at = now(), allowed_hosts = coalesce(@AllowedHosts, allowed_hosts)
            WHERE tenant_id = @TenantId AND id = @Id
            RETURNING {Credential.Columns}
            """;

        private sealed record Current(string Type, int Version);

        public async Task<Result<Credential.Response>> Handle(Command request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var current = await connection.QuerySingleOrDefaultAsync<Current>(
                new CommandDefinition(LockSql, new { session.TenantId, request.Id }, cancellationToken: ct));
            if (current is null) return Error.NotFound(Credential.SubjectType);

            var errors = Credential.SecretFieldErrors(request.NewSecret, current.Type);
            if (errors.Count > 0) return Error.Validation(errors, $"The credential is of type {current.Type}.");

            var version = current.Version + 1;
            var payload = request.NewSecret.ToMaterial(current.Type).ToPayload();
            SealedSecret sealedSecret;
            try
            {
                sealedSecret = await crypto.SealAsync(payload, session.TenantId, request.Id, version, ct);
            }
            catch (KeyServiceUnavailableException e)
            {
                return CredentialErrors.KeyServiceUnavailable(e.Message);
            }
            finally
            {
                CryptographicOperations.ZeroMemory(payload);
            }
            var row = await connection.QuerySingleAsync<Credential.Row>(new CommandDefinition(UpdateSql, new
            {
                session.TenantId,
                request.Id,
                Version = version,
                sealedSecret.Ciphertext,
                sealedSecret.Nonce,
                sealedSecret.Tag,
                sealedSecret.WrappedKey,
                sealedSecret.KeyId,
                AllowedHosts = CredentialHosts.Normalize(request.NewSecret.AllowedHosts),
            }, cancellationToken: ct));

            audit.Record(Credential.SubjectType, row.Id.ToString(), new { row.Name, PreviousVersion = current.Version, row.Version, MasterKeyId = sealedSecret.KeyId, row.AllowedHosts });
            return row.ToResponse();
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPost("/{id:guid}/rotate", async (Guid id, Body body, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id, body), http.RequestAborted)).ToHttp(http))
            .WithName(Command.Operation)
            .WithSummary("Replace a credential's secret (version + 1); the previous version can no longer be resolved.")
            .Produces<Credential.Response>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status404NotFound);
}
