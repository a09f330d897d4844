using System.Reflection;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Integrations.Common;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Metadata;
using Microsoft.AspNetCore.Mvc.Infrastructure;
using Microsoft.AspNetCore.Mvc.ModelBinding;
using Microsoft.AspNetCore.OpenApi;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Microsoft.OpenApi;
using HttpJsonOptions = Microsoft.AspNetCore.Http.Json.JsonOptions;

namespace Integrations.Infrastructure.Http;

/// <summary>
/// The OpenAPI document (<c>/openapi/v1.json</c>): what every operation's entry says beyond its slice's <c>Map</c>,
/// derived from the endpoint's traits so that no slice repeats it. An endpoint that requires authorization gets the
/// security requirement (with its operation's scope as the role), 401, 403 and 503; one with path parameters 404;
/// one with a body 413 and 415; a POST the <c>Idempotency-Key</c> header and 409. Every problem response, these and
/// the ones a slice declares itself (<c>.ProducesProblem(422)</c>), is <c>application/problem+json</c> with the
/// <see cref="ProblemSchema"/> schema. <see cref="OneOfAttribute"/> becomes an enum; <see cref="WithRequestExample{TBuilder}"/>
/// and <see cref="WithTag{TBuilder}"/> add an example and a tag's description.
/// </summary>
public static class ApiDocument
{
    public const string BearerScheme = "bearer";
    public const string ApiKeyScheme = "api_key";
    public const string ProblemSchema = "Problem";
    public const string ProblemMediaType = "application/problem+json";

    /// <summary>What each problem status means here, with the codes it carries (README, "The API in brief").</summary>
    private static readonly Dictionary<int, string> ProblemMeanings = new()
    {
        [400] = "`validation_failed` (with `errors` per field) or `malformed_request`.",
        [401] = "`unauthenticated`: no API key, or one that is unknown, revoked or expired (with `WWW-Authenticate: Bearer`).",
        [403] = "`forbidden`: the API key lacks the operation's scope; where a policy decides, `policy_denied` (with `rule`).",
        [404] = "`not_found`: no such object in the caller's tenant.",
        [409] = "`conflict` or `invalid_transition` (with `current_status`); with `Idempotency-Key`: `idempotency_key_reused` or `idempotency_key_in_progress`.",
        [413] = $"`payload_too_large`: the body is over {RequestBodyLimit.MaxBytes} bytes.",
        [415] = "`unsupported_media_type`: send the body as application/json.",
        [422] = "`ssrf_blocked`, `credential_host_not_allowed` or `credential_reference_invalid`: the destination or the credential is not allowed.",
        [429] = "`rate_limited` (with `retry_after_seconds`); retry after `Retry-After` seconds.",
        [502] = "`upstream_error` or `upstream_unreachable`: the provider, MCP server or datasource failed or could not be reached.",
        [503] = "`unavailable`: the service's database or audit trail cannot be written now; retry.",
        [504] = "`upstream_timeout`: the provider, MCP server or datasource did not answer in time.",
    };

    private static readonly Lazy<IReadOnlyDictionary<string, string>> ScopesByOperation = new(() =>
        typeof(IOperation).Assembly.GetTypes()
            .Where(t => t is { IsClass: true, IsAbstract: false } && typeof(IOperation).IsAssignableFrom(t))
            .ToDictionary(
                t => (string)t.GetProperty(nameof(IOperation.Operation))!.GetValue(null)!,
                t => (string)t.GetProperty(nameof(IOperation.Scope))!.GetValue(null)!));

    /// <summary>The API's JSON settings without the nulls, which only make an example longer.</summary>
    private static readonly ConditionalWeakTable<JsonSerializerOptions, JsonSerializerOptions> ExampleOptions = [];

    public static IServiceCollection AddIntegrationsOpenApi(this IServiceCollection services) =>
        services.AddOpenApi(o =>
        {
            o.CreateSchemaReferenceId = OpenApiSchemaIds.For;
            o.AddSchemaTransformer(ListAllowedValues);
            o.AddOperationTransformer(DescribeOperation);
            o.AddDocumentTransformer(DescribeDocument);
        });

    /// <summary>An example request body for the document, written with the API's own JSON settings.</summary>
    public static TBuilder WithRequestExample<TBuilder>(this TBuilder builder, object example)
        where TBuilder : IEndpointConventionBuilder =>
        builder.WithMetadata(new RequestExample(example));

    /// <summary>Tags the endpoints (an area's route group) and gives the tag its description in the document.</summary>
    public static TBuilder WithTag<TBuilder>(this TBuilder builder, string name, string description)
        where TBuilder : IEndpointConventionBuilder =>
        builder.WithTags(name).WithMetadata(new TagDescription(name, description));

    private sealed record RequestExample(object Value);

    private sealed record TagDescription(string Name, string Description);

    private static Task ListAllowedValues(OpenApiSchema schema, OpenApiSchemaTransformerContext context, CancellationToken ct)
    {
        var property = context.JsonPropertyInfo;
        var oneOf = OneOf(property?.AttributeProvider) ?? OneOf(property?.AssociatedParameter?.AttributeProvider)
            ?? OneOf((context.ParameterDescription?.ParameterDescriptor as IParameterInfoParameterDescriptor)?.ParameterInfo);
        if (oneOf is null) return Task.CompletedTask;

        // A list of such values (scopes) carries the enum on its items.
        var target = schema.Type?.HasFlag(JsonSchemaType.Array) == true && schema.Items is OpenApiSchema items ? items : schema;
        target.Enum = [.. oneOf.Values.Select(v => (JsonNode)JsonValue.Create(v))];
        if (target.Type?.HasFlag(JsonSchemaType.Null) == true) target.Enum.Add(null!);
        return Task.CompletedTask;
    }

    private static OneOfAttribute? OneOf(ICustomAttributeProvider? provider) =>
        provider?.GetCustomAttributes(typeof(OneOfAttribute), inherit: true).OfType<OneOfAttribute>().FirstOrDefault();

    private static Task DescribeOperation(OpenApiOperation operation, OpenApiOperationTransformerContext context, CancellationToken ct)
    {
        var document = context.Document ?? throw new InvalidOperationException("The operation has no document.");
        var description = context.Description;
        var metadata = description.ActionDescriptor.EndpointMetadata;
        operation.Responses ??= [];
        var problems = new SortedSet<int> { 400 };

        var authenticated = metadata.OfType<IAuthorizeData>().Any() && !metadata.OfType<IAllowAnonymous>().Any();
        if (authenticated)
        {
            var scopes = operation.OperationId is { } id && ScopesByOperation.Value.TryGetValue(id, out var scope) ? [scope] : new List<string>();
            operation.Security =
            [
                new OpenApiSecurityRequirement { [new OpenApiSecuritySchemeReference(BearerScheme, document)] = scopes },
                new OpenApiSecurityRequirement { [new OpenApiSecuritySchemeReference(ApiKeyScheme, document)] = [.. scopes] },
            ];
            if (scopes.Count > 0) operation.Description = Join(operation.Description, $"Scope: `{scopes[0]}`.");
            problems.UnionWith([401, 403, 503]);
        }
        if (description.ParameterDescriptions.Any(p => p.Source == BindingSource.Path)) problems.Add(404);
        if (operation.RequestBody is not null) problems.UnionWith([413, 415]);
        if (HttpMethods.IsPost(description.HttpMethod ?? ""))
        {
            problems.Add(409);
            operation.Parameters ??= [];
            operation.Parameters.Add(new OpenApiParameter
            {
                Name = IdempotencyKeys.Header,
                In = ParameterLocation.Header,
                Description = "1-255 visible ASCII characters. A retry with the same key and request gets the first answer again (`Idempotent-Replayed: true`) for 24 hours; nothing runs twice.",
                Schema = new OpenApiSchema { Type = JsonSchemaType.String, MinLength = 1, MaxLength = 255 },
            });
        }

        foreach (var status in problems)
        {
            operation.Responses.TryAdd(status.ToString(System.Globalization.CultureInfo.InvariantCulture), new OpenApiResponse());
        }
        foreach (var (key, response) in operation.Responses.ToList())
        {
            if (!int.TryParse(key, out var status) || status < 400) continue;
            // An error body of another kind that a slice declares (an OpenAI-compatible error, say) stays as declared.
            if (response.Content is { Count: > 0 } declared && !declared.ContainsKey(ProblemMediaType)) continue;
            operation.Responses[key] = new OpenApiResponse
            {
                Description = ProblemMeanings.GetValueOrDefault(status, "Problem details with a stable `code`."),
                Content = new Dictionary<string, OpenApiMediaType>
                {
                    [ProblemMediaType] = new() { Schema = new OpenApiSchemaReference(ProblemSchema, document) },
                },
                Headers = status == 429
                    ? new Dictionary<string, IOpenApiHeader>
                    {
                        ["Retry-After"] = new OpenApiHeader
                        {
                            Description = "Seconds to wait before the next call.",
                            Schema = new OpenApiSchema { Type = JsonSchemaType.Integer },
                        },
                    }
                    : response.Headers,
            };
        }

        if (metadata.OfType<RequestExample>().LastOrDefault() is { } example
            && operation.RequestBody?.Content?.TryGetValue("application/json", out var body) == true)
        {
            var json = ExampleOptions.GetValue(
                context.ApplicationServices.GetRequiredService<IOptions<HttpJsonOptions>>().Value.SerializerOptions,
                api => new JsonSerializerOptions(api) { DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull });
            body.Example = JsonSerializer.SerializeToNode(example.Value, example.Value.GetType(), json);
        }
        return Task.CompletedTask;
    }

    private static Task DescribeDocument(OpenApiDocument document, OpenApiDocumentTransformerContext context, CancellationToken ct)
    {
        document.Info.Title = "Integrations";
        document.Info.Description =
            "Governed integrations for AI agents: BYOK LLM integrations, MCP servers, datasources, audit. " +
            "Send the API key as `Authorization: Bearer <key>` or `X-Api-Key`; errors are RFC 9457 problem details with a stable `code`.";
        // The generator writes the address the document was fetched from, with a trailing slash; behind a proxy that
        // address is wrong. "/" is wherever the document was fetched from.
        document.Servers = [new OpenApiServer { Url = "/" }];

        document.Components ??= new OpenApiComponents();
        document.Components.SecuritySchemes ??= new Dictionary<string, IOpenApiSecurityScheme>();
        document.Components.SecuritySchemes[BearerScheme] = new OpenApiSecurityScheme
        {
            Type = SecuritySchemeType.Http,
            Scheme = "bearer",
            Description = "The API key as a bearer token. It decides the tenant and the scopes (the roles each operation names).",
        };
        document.Components.SecuritySchemes[ApiKeyScheme] = new OpenApiSecurityScheme
        {
            Type = SecuritySchemeType.ApiKey,
            In = ParameterLocation.Header,
            Name = "X-Api-Key",
            Description = "The same API key in the X-Api-Key header.",
        };

        document.Components.Schemas ??= new Dictionary<string, IOpenApiSchema>();
        document.Components.Schemas.Remove("ProblemDetails");
        document.Components.Schemas.Remove("HttpValidationProblemDetails");
        document.Components.Schemas[ProblemSchema] = Problem();

        var tags = context.DescriptionGroups.SelectMany(g => g.Items)
            .SelectMany(d => d.ActionDescriptor.EndpointMetadata.OfType<TagDescription>())
            .DistinctBy(t => t.Name);
        document.Tags ??= new HashSet<OpenApiTag>();
        foreach (var tag in tags)
        {
            if (document.Tags.FirstOrDefault(t => t.Name == tag.Name) is { } existing) existing.Description = tag.Description;
            else document.Tags.Add(new OpenApiTag { Name = tag.Name, Description = tag.Description });
        }
        return Task.CompletedTask;
    }

    /// <summary>The shape <see cref="Problems.ToProblemDetails"/> writes; an error may add its own members (<c>rule</c>, <c>invocation_id</c>).</summary>
    private static OpenApiSchema Problem() => new()
    {
        Type = JsonSchemaType.Object,
        Description = "RFC 9457 problem details with the service's stable `code` and the request's id.",
        Required = new HashSet<string> { "type", "title", "status", "code", "request_id" },
        Properties = new Dictionary<string, IOpenApiSchema>
        {
            ["type"] = new OpenApiSchema { Type = JsonSchemaType.String, Format = "uri", Description = "https://integrations.dev/problems/<code>" },
            ["title"] = new OpenApiSchema { Type = JsonSchemaType.String },
            ["status"] = new OpenApiSchema { Type = JsonSchemaType.Integer, Format = "int32" },
            ["detail"] = new OpenApiSchema { Type = JsonSchemaType.String | JsonSchemaType.Null },
            ["instance"] = new OpenApiSchema { Type = JsonSchemaType.String | JsonSchemaType.Null, Description = "The request's path." },
            ["code"] = new OpenApiSchema { Type = JsonSchemaType.String, Description = "Stable machine-readable error code, e.g. `validation_failed`, `not_found`, `rate_limited`." },
            ["request_id"] = new OpenApiSchema { Type = JsonSchemaType.String, Description = "The request's `X-Request-Id`." },
            ["trace_id"] = new OpenApiSchema { Type = JsonSchemaType.String, Description = "The W3C trace id of the request." },
            ["errors"] = new OpenApiSchema
            {
                Type = JsonSchemaType.Object,
                Description = "With `validation_failed`: the messages per field.",
                AdditionalProperties = new OpenApiSchema { Type = JsonSchemaType.Array, Items = new OpenApiSchema { Type = JsonSchemaType.String } },
            },
        },
    };

    private static string Join(string? text, string more) => string.IsNullOrEmpty(text) ? more : text + "\n\n" + more;
}
