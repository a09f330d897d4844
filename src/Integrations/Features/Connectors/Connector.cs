using System.Text.Json;

namespace Integrations.Features.Connectors;

/// <summary>A connector as the catalog shows it: its manifest, whether it ships with the service, and a registered one's pin.</summary>
public static class Connector
{
    public const string SubjectType = "connector";
    public const string Active = "active";
    public const string Drifted = "drifted";

    /// <summary>The implementation every tenant-registered manifest uses.</summary>
    public const string Http = "http";

    public const string NamePattern = "^[a-z][a-z0-9_-]{0,62}$";

    /// <param name="Status"><c>active</c>, or <c>drifted</c> when a registered manifest changed since it was approved (its actions are refused).</param>
    /// <param name="ApprovedHash">A registered manifest's pin: the hash approved last; null for a built-in.</param>
    public sealed record Response(
        string Name,
        string Version,
        string Description,
        string Implementation,
        bool BuiltIn,
        string Status,
        IReadOnlyList<string> CredentialTypes,
        JsonElement Configuration,
        IReadOnlyList<ActionResponse> Actions,
        string ManifestHash,
        string? ApprovedHash,
        int? Revision);

    public sealed record ActionResponse(string Name, string Description, JsonElement InputSchema, string Output, string RiskLevel, string Access);

    public static Response ToResponse(ConnectorManifest manifest) => new(
        manifest.Name, manifest.Version, manifest.Description, manifest.Connector, true, Active, manifest.CredentialTypes, manifest.Configuration,
        Actions(manifest), manifest.Hash, null, null);

    public static Response ToResponse(ConnectorCatalog.Registered registered)
    {
        var manifest = registered.Parsed();
        return new Response(manifest.Name, manifest.Version, manifest.Description, manifest.Connector, false, registered.Status,
            manifest.CredentialTypes, manifest.Configuration, Actions(manifest), registered.ManifestHash, registered.ApprovedHash, registered.Revision);
    }

    private static List<ActionResponse> Actions(ConnectorManifest manifest) =>
        manifest.Actions.Select(a => new ActionResponse(a.Name, a.Description, a.InputSchema, a.Output, a.RiskLevel, a.Access)).ToList();
}
