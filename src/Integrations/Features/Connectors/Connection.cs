using System.Text.Json;
using Integrations.Infrastructure.Vault;

namespace Integrations.Features.Connectors;

/// <summary>A tenant's binding of a connector to a configuration and a credential reference: what actions are called through.</summary>
public static class Connection
{
    public const string SubjectType = "connection";
    public const string Active = "active";
    public const string Disabled = "disabled";

    /// <param name="DisabledActions">Actions of the connector this connection does not offer (refused, and absent from the MCP gateway).</param>
    public sealed record Response(
        Guid Id,
        string Name,
        string Connector,
        JsonElement Configuration,
        string? CredentialRef,
        string Status,
        IReadOnlyList<string> DisabledActions,
        int? RateLimitPerMinute,
        DateTimeOffset CreatedAt,
        DateTimeOffset UpdatedAt);

    public const string Columns =
        "id, name, connector, configuration::text AS configuration, credential_ref, status, disabled_actions, rate_limit_per_minute, created_at, updated_at";

    public sealed class Row
    {
        public Guid Id { get; init; }
        public required string Name { get; init; }
        public required string Connector { get; init; }
        public required string Configuration { get; init; }
        public string? CredentialRef { get; init; }
        public required string Status { get; init; }
        public string[] DisabledActions { get; init; } = [];
        public int? RateLimitPerMinute { get; init; }
        public DateTimeOffset CreatedAt { get; init; }
        public DateTimeOffset UpdatedAt { get; init; }

        public JsonElement ConfigurationJson()
        {
            using var document = JsonDocument.Parse(Configuration);
            return document.RootElement.Clone();
        }

        public Response ToResponse() => new(Id, Name, Connector, ConfigurationJson(),
            CredentialRef is null ? null : CredentialReference.Describe(CredentialRef), Status, DisabledActions, RateLimitPerMinute, CreatedAt, UpdatedAt);
    }

    public static CredentialAccessor AccessorOf(Guid id) => new(CredentialAccessor.Connection, id);
}
