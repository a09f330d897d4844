using Integrations.Common;

namespace Integrations.Infrastructure.Datasources;

/// <summary>
/// Where a datasource's password comes from: its credential reference, resolved through the vault with the
/// datasource as the accessor (grant checked, access logged). Never from the caller, never stored in a row.
/// </summary>
public interface IDatasourcePasswords
{
    Task<Result<string>> ResolveAsync(Guid datasourceId, string credentialRef, CancellationToken ct);
}

/// <summary>Until the vault is wired in, nothing resolves: the gateway fails closed rather than connect without a secret.</summary>
internal sealed class UnavailableDatasourcePasswords : IDatasourcePasswords
{
    public Task<Result<string>> ResolveAsync(Guid datasourceId, string credentialRef, CancellationToken ct) =>
        Task.FromResult(Result<string>.Fail(Error.Unavailable("Credential resolution is not available: the vault is not configured.")));
}
