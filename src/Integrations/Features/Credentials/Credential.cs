using FluentValidation;
using Integrations.Common;
using Integrations.Infrastructure.Vault;

namespace Integrations.Features.Credentials;

/// <summary>What the credentials.* slices share: the metadata they answer with (never a secret), the row, and the secret-field rules.</summary>
public static class Credential
{
    public const string SubjectType = CredentialResolver.SubjectType;

    public const int MaxSecretLength = 16 * 1024;

    public sealed record Response(
        Guid Id,
        string Name,
        [OneOf(typeof(CredentialTypes), nameof(CredentialTypes.Storable))] string Type,
        string? Description,
        string Reference,
        int Version,
        DateTimeOffset CreatedAt,
        DateTimeOffset? RotatedAt,
        IReadOnlyList<string>? AllowedHosts);

    public sealed record Grant([OneOf(typeof(CredentialAccessor), nameof(CredentialAccessor.Grantable))] string AccessorType, Guid AccessorId, string GrantedBy, DateTimeOffset CreatedAt);

    internal const string Columns = "id, tenant_id, name, type, description, version, created_at, rotated_at, allowed_hosts";

    internal sealed class Row
    {
        public Guid Id { get; init; }
        public required string TenantId { get; init; }
        public required string Name { get; init; }
        public required string Type { get; init; }
        public string? Description { get; init; }
        public int Version { get; init; }
        public DateTimeOffset CreatedAt { get; init; }
        public DateTimeOffset? RotatedAt { get; init; }
        public string[]? AllowedHosts { get; init; }

        public Response ToResponse() => new(
            Id, Name, Type, Description, CredentialReference.ForVault(TenantId, Id), Version, CreatedAt, RotatedAt, AllowedHosts);
    }

    internal sealed class GrantRow
    {
        public required string AccessorType { get; init; }
        public Guid AccessorId { get; init; }
        public required string GrantedBy { get; init; }
        public DateTimeOffset CreatedAt { get; init; }

        public Grant ToGrant() => new(AccessorType, AccessorId, GrantedBy, CreatedAt);
    }

    /// <summary>The secret fields a request may carry, checked against the credential's type. Messages never repeat a value.</summary>
    public interface ISecretFields
    {
        string? Secret { get; }
        string? Username { get; }
        string? Password { get; }
        IReadOnlyDictionary<string, string>? Fields { get; }
    }

    internal static SecretMaterial ToMaterial(this ISecretFields fields, string type) => type switch
    {
        CredentialTypes.BasicAuth => new SecretMaterial(Username: fields.Username, Password: fields.Password),
        CredentialTypes.ClientCertificate => new SecretMaterial(Fields: ClientCertificate.AsStored(fields.Fields!)),
        CredentialTypes.Custom or CredentialTypes.OAuth2ClientCredentials or CredentialTypes.OAuth2RefreshToken or CredentialTypes.HashiCorpVault =>
            new SecretMaterial(Fields: fields.Fields),
        _ => new SecretMaterial(Secret: fields.Secret),
    };

    /// <summary>Field errors for <paramref name="fields"/> as a <paramref name="type"/> credential, or none.</summary>
    internal static Dictionary<string, string[]> SecretFieldErrors(ISecretFields fields, string type)
    {
        var errors = new Dictionary<string, string[]>();
        void Add(string field, string message) => errors[field] = [message];
        var secret = type is CredentialTypes.ApiKey or CredentialTypes.BearerToken;
        if (secret)
        {
            if (string.IsNullOrEmpty(fields.Secret)) Add("secret", $"A {type} credential needs 'secret'.");
            else if (fields.Secret.Length > MaxSecretLength) Add("secret", $"'secret' may be at most {MaxSecretLength} characters.");
        }
        else if (fields.Secret is not null) Add("secret", $"A {type} credential takes no 'secret'.");

        if (type == CredentialTypes.BasicAuth)
        {
            if (string.IsNullOrEmpty(fields.Username) || fields.Username.Length > 1024) Add("username", "A basic_auth credential needs 'username' (at most 1024 characters).");
            if (string.IsNullOrEmpty(fields.Password) || fields.Password.Length > MaxSecretLength) Add("password", $"A basic_auth credential needs 'password' (at most {MaxSecretLength} characters).");
        }
        else
        {
            if (fields.Username is not null) Add("username", $"A {type} credential takes no 'username'.");
            if (fields.Password is not null) Add("password", $"A {type} credential takes no 'password'.");
        }

        if (CredentialTypes.IsOAuth(type))
        {
            if (OAuthClientTokens.FieldsRefusal(type, fields.Fields) is { } refusal) Add("fields", refusal);
        }
        else if (type == CredentialTypes.ClientCertificate)
        {
            if (fields.Fields?.Values.Any(v => v is null || v.Length > MaxSecretLength) == true) Add("fields", $"Each field may be at most {MaxSecretLength} characters.");
            else
            {
                var parsed = ClientCertificate.From(fields.Fields, DateTimeOffset.UtcNow);
                if (parsed.IsSuccess) parsed.Value.Dispose();
                else Add("fields", parsed.Error!.FieldErrors!["fields"][0]);
            }
        }
        else if (type == CredentialTypes.HashiCorpVault)
        {
            if (fields.Fields?.Values.Any(v => v is null || v.Length > MaxSecretLength) == true) Add("fields", $"Each field may be at most {MaxSecretLength} characters.");
            else if (HashiCorpVaultSettings.FromFields(fields.Fields, TimeSpan.Zero).Error is { } refused) Add("fields", refused.FieldErrors!["fields"][0]);
        }
        else if (type == CredentialTypes.Custom)
        {
            if (fields.Fields is not { Count: > 0 and <= 50 }) Add("fields", "A custom credential needs 'fields': 1-50 named values.");
            else if (fields.Fields.Any(f => string.IsNullOrWhiteSpace(f.Key) || f.Key.Length > 100 || f.Value is null || f.Value.Length > MaxSecretLength))
                Add("fields", $"Each field needs a name of 1-100 characters and a value of at most {MaxSecretLength} characters.");
        }
        else if (fields.Fields is not null) Add("fields", $"A {type} credential takes no 'fields'.");
        return errors;
    }

    internal static IRuleBuilderOptions<T, string?> ValidCredentialName<T>(this IRuleBuilder<T, string?> rule) =>
        rule.NotEmpty().WithMessage("Name is required.")
            .MaximumLength(200).WithMessage("Name may be at most 200 characters.")
            .Must(n => n is null || n.Trim() == n).WithMessage("Name may not start or end with whitespace.");

    /// <summary>Where the secret may be sent (null: anywhere it is attached); an empty list is refused, so a binding is never silently nothing.</summary>
    internal static IRuleBuilderOptions<T, IReadOnlyList<string>?> ValidAllowedHosts<T>(this IRuleBuilder<T, IReadOnlyList<string>?> rule) =>
        rule.Must(hosts => hosts is null || CredentialHosts.Normalize(hosts) is not null).WithMessage(CredentialHosts.Rule);

    /// <summary>Adds the secret-field errors to a validator (for the type the request names).</summary>
    internal static void ValidSecretFields<T>(this AbstractValidator<T> validator, Func<T, ISecretFields?> fields, Func<T, string?> type) =>
        validator.RuleFor(x => x).Custom((request, context) =>
        {
            if (fields(request) is not { } f || type(request) is not { } t || !CredentialTypes.Storable.Contains(t)) return;
            foreach (var (field, messages) in SecretFieldErrors(f, t))
            {
                foreach (var message in messages) context.AddFailure(field, message);
            }
        });
}
