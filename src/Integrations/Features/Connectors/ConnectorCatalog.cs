using System.Text.Json;
using Dapper;
using Integrations.Common;
using Npgsql;

namespace Integrations.Features.Connectors;

/// <summary>
/// The connectors a tenant can connect to: the built-in manifests (read and checked once, when the service starts) and
/// the tenant's own registered manifests (<c>connector_manifests</c>), which always use the http connector. A built-in
/// name cannot be registered by a tenant, so a name means one manifest.
/// </summary>
public sealed class ConnectorCatalog
{
    private readonly Dictionary<string, ConnectorManifest> _builtIn;

    public ConnectorCatalog()
    {
        BuiltIn = ConnectorManifest.BuiltIn();
        _builtIn = BuiltIn.ToDictionary(m => m.Name, StringComparer.Ordinal);
    }

    public IReadOnlyList<ConnectorManifest> BuiltIn { get; }

    public bool IsBuiltIn(string name) => _builtIn.ContainsKey(name);

    public ConnectorManifest? FindBuiltIn(string name) => _builtIn.GetValueOrDefault(name);

    /// <summary>A registered manifest as stored: the current one, its pin and its state.</summary>
    public sealed class Registered
    {
        public Guid Id { get; init; }
        public required string Name { get; init; }
        public required string Version { get; init; }
        public required string Manifest { get; init; }
        public required string ManifestHash { get; init; }
        public required string ApprovedHash { get; init; }
        public required string Status { get; init; }
        public int Revision { get; init; }
        public DateTime CreatedAt { get; init; }
        public DateTime UpdatedAt { get; init; }

        /// <summary>Stored manifests passed <see cref="ConnectorManifest.Parse"/> when they were registered.</summary>
        public ConnectorManifest Parsed()
        {
            using var document = JsonDocument.Parse(Manifest);
            return ConnectorManifest.Parse(document.RootElement).Value;
        }
    }

    public const string RegisteredColumns =
        "id, name, version, manifest::text AS manifest, manifest_hash, approved_hash, status, revision, created_at, updated_at";

    public static Task<Registered?> FindRegisteredAsync(NpgsqlConnection connection, string tenantId, string name, CancellationToken ct) =>
        connection.QuerySingleOrDefaultAsync<Registered>(new CommandDefinition(
            $"SELECT {RegisteredColumns} FROM connector_manifests WHERE tenant_id = @TenantId AND name = @Name",
            new { TenantId = tenantId, Name = name }, cancellationToken: ct));

    /// <summary>The manifest a name stands for and whether it may be used now (a drifted registration may not), or null.</summary>
    public async Task<(ConnectorManifest Manifest, bool Drifted)?> FindAsync(NpgsqlConnection connection, string tenantId, string name, CancellationToken ct)
    {
        if (_builtIn.TryGetValue(name, out var builtIn)) return (builtIn, false);
        var registered = await FindRegisteredAsync(connection, tenantId, name, ct);
        return registered is null ? null : (registered.Parsed(), registered.Status == Connector.Drifted);
    }
}
