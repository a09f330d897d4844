using System.Security.Cryptography;
using System.Text;
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

public static class EncryptCredential
{
    public sealed record Command(string Secret) : IOperation<Response>, IAudited
    {
        public static string Operation => "credentials.encrypt";
        public static string Scope => Scopes.Admin;

        public override string ToString() => "EncryptCredential.Command(secret redacted)";
    }

    /// <summary>An <c>encrypted://</c> reference: usable only by this tenant, resolvable without a vault row.</summary>
    public sealed record Response(string Reference, string MasterKeyId);

    internal sealed class Validator : AbstractValidator<Command>
    {
        public Validator() =>
            RuleFor(x => x.Secret).NotEmpty().WithMessage("'secret' is required.")
                .MaximumLength(Credential.MaxSecretLength).WithMessage($"'secret' may be at most {Credential.MaxSecretLength} characters.");
    }

    internal sealed class Handler(TenantSession session, AuditTrail audit, VaultCrypto crypto) : IRequestHandler<Command, Result<Response>>
    {
        public async Task<Result<Response>> Handle(Command request, CancellationToken ct)
        {
            var plaintext = Encoding.UTF8.GetBytes(request.Secret);
            try
            {
                var reference = await crypto.EncryptReferenceAsync(plaintext, session.TenantId, ct);
                var keyId = VaultCrypto.ReferenceKeyId(reference);
                audit.Record("encrypted_reference", keyId, new { MasterKeyId = keyId });
                return new Response(reference, keyId);
            }
            catch (KeyServiceUnavailableException e)
            {
                return CredentialErrors.KeyServiceUnavailable(e.Message);
            }
            finally
            {
                CryptographicOperations.ZeroMemory(plaintext);
            }
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPost("/encrypt", async (Command command, IMediator mediator, HttpContext http) =>
                (await mediator.Send(command, http.RequestAborted)).ToHttp(http))
            .WithName(Command.Operation)
            .WithSummary("Encrypt a secret into a self-contained encrypted:// reference for this tenant (scope admin).")
            .Produces<Response>()
            .ProducesValidationProblem();
}
