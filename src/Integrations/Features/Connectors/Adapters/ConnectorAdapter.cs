using System.Text.Json;
using Integrations.Common;
using Integrations.Infrastructure.Vault;

namespace Integrations.Features.Connectors.Adapters;

/// <summary>A connection as an adapter sees it: who owns it, its name and its configuration (already valid against the manifest's schema).</summary>
public sealed record ConnectionEndpoint(Guid Id, string TenantId, string Name, JsonElement Configuration)
{
    public string? Setting(string name) =>
        Configuration.ValueKind == JsonValueKind.Object && Configuration.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String
            ? value.GetString()
            : null;

    public int? Number(string name) =>
        Configuration.ValueKind == JsonValueKind.Object && Configuration.TryGetProperty(name, out var value) && value.TryGetInt32(out var number)
            ? number
            : null;
}

/// <summary>One action call as the governed-call stage admitted it: the credential is the connection's, resolved through the vault.</summary>
public sealed record ActionCall(Guid InvocationId, ConnectionEndpoint Connection, ConnectorAction Action, JsonElement Arguments, ResolvedCredential? Credential);

/// <summary>What an action answered: its output (shown to the caller and hashed into the record) and facts for the audit event.</summary>
public sealed record ActionOutput(JsonElement Output, IReadOnlyDictionary<string, object?>? Facts = null);

/// <summary>A round trip to the service (connections.test): whether it answered as expected, and what it said.</summary>
public sealed record ConnectionProbe(bool Ok, string Detail, int? Status = null);

/// <summary>
/// A built-in connector's implementation: checks a connection's configuration (every address it will reach passes the
/// SSRF guard), makes the round trip of connections.test, and performs an action — the side effect only; the
/// governed-call stage has already decided, resolved the credential and recorded <c>started</c>.
/// </summary>
public interface IConnectorAdapter
{
    /// <summary>The manifest <c>connector</c> value it implements.</summary>
    string Name { get; }

    /// <summary>Null when the configuration can be used; else why not (<c>ssrf_blocked</c>, <c>validation_failed</c>).</summary>
    Task<Error?> CheckConfigurationAsync(ConnectionEndpoint connection, CancellationToken ct);

    Task<ConnectionProbe> TestAsync(ConnectionEndpoint connection, ResolvedCredential? credential, CancellationToken ct);

    /// <summary>
    /// What the input schema allows but the action still cannot send (a <c>..</c> path segment, a recipient that is
    /// no address): the governed call refuses it as input, before anything is recorded as started or sent.
    /// </summary>
    Error? CheckArguments(ConnectionEndpoint connection, ConnectorAction action, JsonElement arguments) => null;

    Task<Result<ActionOutput>> InvokeAsync(ActionCall call, CancellationToken ct);

    /// <summary>Drops what the adapter keeps for the connection (pooled clients) when it is deleted.</summary>
    ValueTask ForgetAsync(Guid connectionId) => ValueTask.CompletedTask;
}

/// <summary>The adapters by the manifest's <c>connector</c> name.</summary>
public sealed class ConnectorAdapters(IEnumerable<IConnectorAdapter> adapters)
{
    private readonly Dictionary<string, IConnectorAdapter> _byName = adapters.ToDictionary(a => a.Name, StringComparer.Ordinal);

    public IConnectorAdapter For(string connector) =>
        _byName.TryGetValue(connector, out var adapter) ? adapter : throw new InvalidOperationException($"No adapter implements the connector '{connector}'.");

    public bool Has(string connector) => _byName.ContainsKey(connector);
}
