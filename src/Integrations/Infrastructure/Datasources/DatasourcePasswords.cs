using Integrations.Common;
using Integrations.Infrastructure.Vault;

namespace Integrations.Infrastructure.Datasources;

/// <summary>
/// A datasource's password, resolved from its stored credential reference through the vault with the datasource
/// as the accessor (grant checked, every attempt in the access log), at the moment a connection needs it. The
/// caller never supplies it and no row holds it. A vault credential gives its <c>password</c> (basic_auth), its
/// secret (api_key, bearer_token) or its <c>password</c> field (custom); an <c>encrypted://</c> reference, its value.
/// </summary>
public sealed class DatasourcePasswords(CredentialResolver resolver)
{
    public async Task<Result<string>> ResolveAsync(Guid datasourceId, string credentialRef, string operation, CancellationToken ct)
    {
        var resolved = await resolver.ResolveAsync(new CredentialAccessor(CredentialAccessor.Datasource, datasourceId), credentialRef, operation, ct);
        return resolved.IsSuccess ? PasswordOf(resolved.Value) : resolved.Error!;
    }

    /// <summary>The password a resolved credential holds for a datasource, or why it holds none.</summary>
    public static Result<string> PasswordOf(ResolvedCredential credential)
    {
        if (credential.Type == CredentialTypes.ClientCertificate)
        {
            const string NotYet = "Datasources sign in with a password; client_certificate credentials are used for MCP servers and http connectors, not yet for PostgreSQL.";
            return Error.Validation(new Dictionary<string, string[]> { ["credential_ref"] = [NotYet] }, NotYet);
        }
        var password = credential.Type switch
        {
            CredentialTypes.BasicAuth => credential.Password,
            CredentialTypes.Custom => credential.Fields.GetValueOrDefault("password"),
            _ => credential.Value,
        };
        return string.IsNullOrEmpty(password)
            ? Error.Validation("credential_ref", $"The {credential.Type} credential holds no password for the datasource (custom credentials need a 'password' field).")
            : password;
    }
}
