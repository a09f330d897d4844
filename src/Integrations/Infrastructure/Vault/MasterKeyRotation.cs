using System.Text;
using Dapper;
using Integrations.Infrastructure.Database;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Integrations.Infrastructure.Vault;

/// <summary>
/// Re-wraps every live credential's data key under the current master key (local or AWS KMS, from whichever provider holds the old one), and re-encrypts the <c>encrypted://</c>
/// references stored in reference columns, without touching a secret's ciphertext. Each row switches in one
/// statement (its wrapped key and key id together, and only if the row did not change meanwhile), so resolution keeps
/// working throughout as long as the previous keys stay configured until the run ends. Runs as the owner (all tenants).
/// </summary>
public sealed class MasterKeyRotation(OwnerDatabase owner, VaultCrypto crypto, ILogger<MasterKeyRotation> logger)
{
    /// <summary>Columns that hold credential references, by table; tables that do not exist yet are skipped.</summary>
    public static readonly IReadOnlyList<(string Table, string Column)> ReferenceColumns =
    [
        ("cus_integrations", "credential_ref"),
        ("mcp_servers", "credential_ref"),
        ("datasources", "credential_ref"),
    ];

    public sealed record Report(string CurrentKeyId, int Rewrapped, int ReferencesReencrypted, IReadOnlyDictionary<string, int> Skipped)
    {
        public bool Complete => Skipped.Count == 0;
    }

    private sealed class CredentialRow
    {
        public Guid Id { get; init; }
        public required string TenantId { get; init; }
        public int Version { get; init; }
        public required byte[] WrappedKey { get; init; }
        public required string KeyId { get; init; }
    }

    private sealed class ReferenceRow
    {
        public Guid Id { get; init; }
        public required string TenantId { get; init; }
        public required string Reference { get; init; }
    }

    public async Task<Report> RunAsync(CancellationToken ct)
    {
        var current = crypto.CurrentKeyId;
        var skipped = new Dictionary<string, int>();
        void Skip(string why) => skipped[why] = skipped.GetValueOrDefault(why) + 1;

        await using var connection = await owner.DataSource.OpenConnectionAsync(ct);
        var rewrapped = 0;
        var after = Guid.Empty;
        while (true)
        {
            var rows = (await connection.QueryAsync<CredentialRow>(new CommandDefinition("""
                SELECT id, tenant_id, version, wrapped_key, key_id FROM credentials
                WHERE key_id <> @Current AND deleted_at IS NULL AND id > @After
                ORDER BY id LIMIT 500
                """, new { Current = current, After = after }, cancellationToken: ct))).AsList();
            if (rows.Count == 0) break;
            after = rows[^1].Id;
            foreach (var row in rows)
            {
                byte[] wrapped;
                try
                {
                    wrapped = await crypto.RewrapAsync(row.KeyId, row.WrappedKey, row.TenantId, row.Id, row.Version, ct);
                }
                catch (MasterKeyUnavailableException)
                {
                    Skip($"master key {row.KeyId} not configured");
                    continue;
                }
                catch (VaultIntegrityException)
                {
                    Skip("data key failed its integrity check");
                    continue;
                }
                catch (KeyServiceUnavailableException)
                {
                    Skip("the key service could not be asked");
                    continue;
                }
                rewrapped += await connection.ExecuteAsync(new CommandDefinition("""
                    UPDATE credentials SET wrapped_key = @Wrapped, key_id = @Current
                    WHERE id = @Id AND key_id = @OldKeyId AND version = @Version AND wrapped_key = @OldWrapped
                    """, new { Wrapped = wrapped, Current = current, row.Id, OldKeyId = row.KeyId, row.Version, OldWrapped = row.WrappedKey },
                    cancellationToken: ct));
            }
        }

        var reencrypted = 0;
        foreach (var (table, column) in ReferenceColumns)
        {
            if (await connection.ExecuteScalarAsync<string?>(new CommandDefinition("SELECT to_regclass(@table)::text", new { table }, cancellationToken: ct)) is null)
            {
                continue;
            }
            var rows = await connection.QueryAsync<ReferenceRow>(new CommandDefinition(
                $"SELECT id, tenant_id, {column} AS reference FROM {table} WHERE {column} LIKE 'encrypted://%'", cancellationToken: ct));
            foreach (var row in rows)
            {
                string replacement;
                try
                {
                    if (VaultCrypto.ReferenceKeyId(row.Reference) == current) continue;
                    replacement = await crypto.EncryptReferenceAsync(await crypto.DecryptReferenceAsync(row.Reference, row.TenantId, ct), row.TenantId, ct);
                }
                catch (MasterKeyUnavailableException e)
                {
                    Skip($"master key {e.KeyId} not configured");
                    continue;
                }
                catch (VaultIntegrityException)
                {
                    Skip($"encrypted:// reference in {table} failed its integrity check");
                    continue;
                }
                catch (KeyServiceUnavailableException)
                {
                    Skip("the key service could not be asked");
                    continue;
                }
                reencrypted += await connection.ExecuteAsync(new CommandDefinition(
                    $"UPDATE {table} SET {column} = @Replacement WHERE id = @Id AND {column} = @Reference",
                    new { Replacement = replacement, row.Id, row.Reference }, cancellationToken: ct));
            }
        }

        var report = new Report(current, rewrapped, reencrypted, skipped);
        logger.LogInformation("Master key rotation to {KeyId}: {Rewrapped} data keys re-wrapped, {Reencrypted} references re-encrypted, {Skipped} skipped",
            current, rewrapped, reencrypted, skipped.Values.Sum());
        return report;
    }

    public static string Describe(Report report)
    {
        var text = new StringBuilder()
            .Append($"Current master key {report.CurrentKeyId}: re-wrapped {report.Rewrapped} credential data key(s), ")
            .Append($"re-encrypted {report.ReferencesReencrypted} encrypted:// reference(s).");
        foreach (var (why, count) in report.Skipped) text.Append($"\nSkipped {count}: {why}.");
        text.Append(report.Complete
            ? "\nNothing is left under older keys: the previous keys can be removed from Integrations:Vault:PreviousKeys."
            : "\nKeep the previous keys configured until every row is re-wrapped.");
        return text.ToString();
    }
}
