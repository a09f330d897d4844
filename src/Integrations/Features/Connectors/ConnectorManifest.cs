using System.Reflection;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.RegularExpressions;
using Integrations.Common;
using NJsonSchema;

namespace Integrations.Features.Connectors;

/// <summary>
/// A connector as its manifest describes it (schemas/connector-manifest.schema.json): name, version, the implementation
/// that runs its actions (<see cref="Connector"/>), the configuration a connection gives (a JSON Schema), the credential
/// types it accepts, and its actions, each with an input schema, an output description, a risk level and whether it
/// reads or writes. <see cref="Hash"/> (SHA-256 of the canonical JSON) is what a tenant's registered manifest is pinned by.
/// </summary>
public sealed record ConnectorManifest(
    string Name,
    string Version,
    string Description,
    string Connector,
    JsonElement Configuration,
    IReadOnlyList<string> CredentialTypes,
    IReadOnlyList<ConnectorAction> Actions)
{
    public const string SchemaResource = "Integrations.schemas.connector-manifest.schema.json";

    /// <summary>The credential type of a connector that needs no secret (a webhook signs with one, SMTP may go without).</summary>
    public const string NoCredential = "none";

    internal static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    private static readonly Lazy<JsonSchema> Schema = new(() =>
    {
        using var stream = typeof(ConnectorManifest).Assembly.GetManifestResourceStream(SchemaResource)
            ?? throw new InvalidOperationException($"The embedded resource {SchemaResource} is missing.");
        using var reader = new StreamReader(stream);
        return JsonSchema.FromJsonAsync(reader.ReadToEnd()).GetAwaiter().GetResult();
    });

    private static readonly Regex Placeholder = new(@"\{([A-Za-z_][A-Za-z0-9_]*)\}", RegexOptions.Compiled, TimeSpan.FromSeconds(1));

    public string Hash { get; private init; } = string.Empty;

    /// <summary>The manifest's own JSON (what GET /connectors/{name} shows and what is stored).</summary>
    public JsonElement Document { get; private init; }

    public ConnectorAction? Action(string name) => Actions.FirstOrDefault(a => a.Name == name);

    /// <summary>Reads and checks a manifest: the published schema first, then what a schema cannot say (input schemas that compile, placeholders that name arguments).</summary>
    public static Result<ConnectorManifest> Parse(JsonElement document)
    {
        var errors = new Dictionary<string, string[]>();
        foreach (var error in Schema.Value.Validate(document.GetRawText()))
        {
            var path = error.Path is { Length: > 0 } p ? "manifest." + p.TrimStart('#', '/').Replace('/', '.') : "manifest";
            errors[path] = [.. errors.GetValueOrDefault(path, []), $"{error.Kind}{(error.Property is null ? "" : $" ({error.Property})")}."];
        }
        if (errors.Count > 0) return Error.Validation(errors, "The manifest does not match schemas/connector-manifest.schema.json.");

        var manifest = document.Deserialize<ConnectorManifest>(Json)!;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < manifest.Actions.Count; i++)
        {
            var action = manifest.Actions[i];
            var field = $"manifest.actions[{i}]";
            if (!seen.Add(action.Name)) errors[$"{field}.name"] = [$"The action '{action.Name}' is declared twice."];
            try
            {
                JsonSchema.FromJsonAsync(action.InputSchema.GetRawText()).GetAwaiter().GetResult();
            }
            catch (Exception e) when (e is Newtonsoft.Json.JsonException or InvalidOperationException or NotSupportedException)
            {
                errors[$"{field}.input_schema"] = ["The input schema is not a usable JSON Schema."];
            }
            if (manifest.Connector == "http" && action.Request is null) errors[$"{field}.request"] = ["An action of the http connector needs a request template."];
            if (manifest.Connector != "http" && action.Request is not null) errors[$"{field}.request"] = ["Only actions of the http connector have a request template."];
            if (action.Request is { } request && UnknownPlaceholders(request, action.ArgumentNames()) is { Count: > 0 } unknown)
            {
                errors[$"{field}.request"] = [$"The template names arguments the input schema does not declare: {string.Join(", ", unknown)}."];
            }
        }
        if (errors.Count > 0) return Error.Validation(errors, "The manifest is not usable.");
        return manifest with { Hash = CanonicalJson.Sha256(document), Document = document.Clone() };
    }

    /// <summary>The manifests that ship with the service, checked like any other: a bad one stops the start.</summary>
    internal static IReadOnlyList<ConnectorManifest> BuiltIn()
    {
        var assembly = typeof(ConnectorManifest).Assembly;
        const string prefix = "Integrations.Features.Connectors.Manifests.";
        var manifests = new List<ConnectorManifest>();
        foreach (var resource in assembly.GetManifestResourceNames().Where(n => n.StartsWith(prefix, StringComparison.Ordinal)).Order(StringComparer.Ordinal))
        {
            using var stream = assembly.GetManifestResourceStream(resource)!;
            using var document = JsonDocument.Parse(stream);
            var parsed = Parse(document.RootElement);
            if (!parsed.IsSuccess)
            {
                var problems = string.Join("; ", parsed.Error!.FieldErrors!.Select(e => $"{e.Key}: {string.Join(" ", e.Value)}"));
                throw new InvalidOperationException($"The built-in connector manifest {resource} is not valid: {problems}");
            }
            manifests.Add(parsed.Value);
        }
        return manifests;
    }

    internal static IEnumerable<string> PlaceholdersIn(string template) => Placeholder.Matches(template).Select(m => m.Groups[1].Value);

    internal static string Fill(string template, Func<string, string> value) => Placeholder.Replace(template, m => value(m.Groups[1].Value));

    private static List<string> UnknownPlaceholders(HttpRequestTemplate request, ISet<string> arguments)
    {
        var names = PlaceholdersIn(request.Path)
            .Concat((request.Query ?? new Dictionary<string, string>()).Values.SelectMany(PlaceholdersIn))
            .Concat((request.Headers ?? new Dictionary<string, string>()).Values.SelectMany(PlaceholdersIn))
            .Concat(request.Body is { } body ? StringsIn(body).SelectMany(PlaceholdersIn) : []);
        return names.Where(n => !arguments.Contains(n)).Distinct().ToList();
    }

    private static IEnumerable<string> StringsIn(JsonElement element) => element.ValueKind switch
    {
        JsonValueKind.String => [element.GetString()!],
        JsonValueKind.Object => element.EnumerateObject().SelectMany(p => StringsIn(p.Value)),
        JsonValueKind.Array => element.EnumerateArray().SelectMany(StringsIn),
        _ => [],
    };
}

/// <param name="Access"><c>read</c> (a fetch) or <c>write</c> (a push).</param>
public sealed record ConnectorAction(
    string Name,
    string Description,
    JsonElement InputSchema,
    string Output,
    string RiskLevel,
    string Access,
    HttpRequestTemplate? Request = null)
{
    internal ISet<string> ArgumentNames() =>
        InputSchema.TryGetProperty("properties", out var properties) && properties.ValueKind == JsonValueKind.Object
            ? properties.EnumerateObject().Select(p => p.Name).ToHashSet(StringComparer.Ordinal)
            : new HashSet<string>(StringComparer.Ordinal);
}

/// <summary>How the http connector maps an action's arguments to a request under the connection's base URL.</summary>
public sealed record HttpRequestTemplate(
    string Method,
    string Path,
    IReadOnlyDictionary<string, string>? Query = null,
    IReadOnlyDictionary<string, string>? Headers = null,
    JsonElement? Body = null);
