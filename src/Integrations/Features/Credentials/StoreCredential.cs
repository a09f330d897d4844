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

public static class StoreCredential
{
    /// <summary>
    /// The secret fields by type: api_key and bearer_token take <c>secret</c>; basic_auth takes <c>username</c> and
    /// <c>password</c>; custom takes <c>fields</c> (name → value).
    /// </summary>
    public sealed record Command(
        string Name,
        [OneOf(typeof(CredentialTypes), nameof(CredentialTypes.Storable))] string Type,
        string? Secret = null,
        string? Username = null,
        string? Password = null,
        IReadOnlyDictionary<string, string>? Fields = null,
        string? Description = null,
        IReadOnlyList<string>? AllowedHosts = null) : IOperation<Credential.Response>, IAudited, Credential.ISecretFields
    {
        public static string Operation => "credentials.store";
        public static string Scope => Scopes.Write;

        public override string ToString() => $"StoreCredential.Command({Name}, {Type}, secret redacted)";
    }

    internal sealed class Validator : AbstractValidator<Command>
    {
        public Validator()
        {
            RuleFor(x => x.Name).ValidCredentialName();
            RuleFor(x => x.Type).Must(t => CredentialTypes.Storable.Contains(t))
                .WithMessage($"Type must be one of: {string.Join(", ", CredentialTypes.Storable)}.");
            RuleFor(x => x.Description).MaximumLength(1000).WithMessage("Description may be at most 1000 characters.");
            RuleFor(x => x.AllowedHosts).ValidAllowedHosts();
            this.ValidSecretFields(x => x, x => x.Type);
        }
    }

    internal sealed class Handler(TenantSession session, AuditTrail audit, VaultCrypto crypto) : IRequestHandler<Command, Result<Credential.Response>>
    {
        private const string Sql = $"""
            INSERT INTO credentials (id, tenant_id, name, type, description, version, ciphertext, nonce, tag, wrapped_key, key_id, allowed_hosts)
            VALUES (@Id, @TenantId, @Name, @Type, @Description, 1, @Ciphertext, @Nonce, @Tag, @WrappedKey, @KeyId, @AllowedHosts)
            ON CONFLICT DO NOTHING
            RETURNING {Credential.Columns}
            """;

        public async Task<Result<Credential.Response>> Handle(Command request, CancellationToken ct)
        {
            var id = Ids.New();
            var payload = request.ToMaterial(request.Type).ToPayload();
            SealedSecret sealedSecret;
            try
            {
                sealedSecret = await crypto.SealAsync(payload, session.TenantId, id, version: 1, ct);
            }
            catch (KeyServiceUnavailableException e)
            {
                return CredentialErrors.KeyServiceUnavailable(e.Message);
            }
            finally
            {
                CryptographicOperations.ZeroMemory(payload);
            }

            var connection = await session.ConnectionAsync(ct);
            var row = await connection.QuerySingleOrDefaultAsync<Credential.Row>(new CommandDefinition(Sql, new
            {
                Id = id,
                session.TenantId,
                request.Name,
                request.Type,
                request.Description,
                sealedSecret.Ciphertext,
                sealedSecret.Nonce,
                sealedSecret.Tag,
                sealedSecret.WrappedKey,
                sealedSecret.KeyId,
                AllowedHosts = CredentialHosts.Normalize(request.AllowedHosts),
            }, cancellationToken: ct));
            if (row is null) return Error.Conflict($"A credential named '{request.Name}' already exists.");

            audit.Record(Credential.SubjectType, row.Id.ToString(), new { row.Name, row.Type, row.Version, MasterKeyId = sealedSecret.KeyId, row.AllowedHosts });
            return row.ToResponse();
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPost("/", async (Command command, IMediator mediator, HttpContext http) =>
                (await mediator.Send(command, http.RequestAborted)).ToHttp(http,
                    created => TypedResults.Created($"/credentials/{created.Id}", created)))
            .WithName(Command.Operation)
            .WithRequestExample(new Command("openai-prod", CredentialTypes.ApiKey, Secret: "sk-...", AllowedHosts: ["api.openai.com"]))
            .WithSummary("Store a secret in the vault; answers its cus-vault:// reference and metadata, never the secret.")
            .Produces<Credential.Response>(StatusCodes.Status201Created)
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status409Conflict);
}
