using Integrations.Common;
using Integrations.Infrastructure.Vault;

namespace Integrations.Infrastructure.Datasources;

/// <summary>
/// How the gateway signs in to a datasource, as resolved for one connection: a password, or a TLS client certificate
/// (the server authenticates the certificate, whose CN names the role, so no password is sent). A vault credential
/// gives its <c>password</c> (basic_auth), its secret (api_key, bearer_token), its <c>password</c> field (custom) or
/// its certificate (client_certificate); an <c>encrypted://</c> reference, its value. The caller never supplies it,
/// no row holds it, and its <see cref="ToString"/> is redacted.
/// </summary>
public sealed class DatasourceSignIn
{
    private DatasourceSignIn(string? password, ClientCertificate? certificate)
    {
        Password = password;
        Certificate = certificate;
    }

    public string? Password { get; }

    public ClientCertificate? Certificate { get; }

    public static DatasourceSignIn WithPassword(string password) => new(password, null);

    /// <summary>How a resolved credential signs in to the datasource at <paramref name="target"/>, or why it cannot.</summary>
    public static Result<DatasourceSignIn> Of(ResolvedCredential credential, DatasourceTarget target)
    {
        if (credential.Type == CredentialTypes.ClientCertificate)
        {
            if (target.TlsMode == "disable")
            {
                const string NoTls = "A client certificate is presented in the TLS handshake: the datasource's tls_mode must not be 'disable' (use 'verify-full', or 'require').";
                return Error.Validation(new Dictionary<string, string[]> { ["tls_mode"] = [NoTls] }, NoTls);
            }
            var certificate = ClientCertificate.Of(credential, DateTimeOffset.UtcNow);
            return certificate.IsSuccess ? new DatasourceSignIn(null, certificate.Value) : certificate.Error!;
        }
        var password = credential.Type switch
        {
            CredentialTypes.BasicAuth => credential.Password,
            CredentialTypes.Custom => credential.Fields.GetValueOrDefault("password"),
            _ => credential.Value,
        };
        return string.IsNullOrEmpty(password)
            ? Error.Validation("credential_ref", $"The {credential.Type} credential holds no password for the datasource (custom credentials need a 'password' field).")
            : WithPassword(password);
    }

    /// <summary>Belt and braces: whatever a driver put in a message, the password never reaches a row, a response or the audit trail.</summary>
    public string Redact(string? text) =>
        string.IsNullOrEmpty(text) ? string.Empty : string.IsNullOrEmpty(Password) ? text : text.Replace(Password, "[redacted]", StringComparison.Ordinal);

    public override string ToString() => Certificate is null ? "DatasourceSignIn(password redacted)" : $"DatasourceSignIn({Certificate})";
}

/// <summary>
/// Resolves a datasource's sign-in from its stored credential reference through the vault with the datasource as the
/// accessor (grant checked, every attempt in the access log), at the moment a connection needs it.
/// </summary>
public sealed class DatasourceSignIns(CredentialResolver resolver)
{
    public async Task<Result<DatasourceSignIn>> ResolveAsync(DatasourceTarget target, string credentialRef, string operation, CancellationToken ct)
    {
        var resolved = await resolver.ResolveAsync(new CredentialAccessor(CredentialAccessor.Datasource, target.Id), credentialRef, operation, ct);
        return resolved.IsSuccess ? DatasourceSignIn.Of(resolved.Value, target) : resolved.Error!;
    }
}
