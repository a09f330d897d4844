using System.Net;
using System.Text.Json;
using Integrations.Common;
using Integrations.Features.Integrations;
using Integrations.Infrastructure.Http;
using Integrations.Tests.Support;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Tests.Http;

/// <summary>
/// The OpenAPI document as served (<c>/openapi/v1.json</c>), over whatever endpoints exist when the tests run: every
/// operation has its own request schema, responses are shared only inside an area, the security requirement and the
/// problem responses follow the endpoint's traits, numbers are numbers and string sets are enums.
/// </summary>
public sealed class OpenApiDocumentTests(ApiFixture fixture) : IClassFixture<ApiFixture>
{
    private static readonly string[] Methods = ["get", "put", "post", "delete", "patch"];

    /// <summary>Schemas several operations may share (none: even the LLM gateway's pass-through bodies are declared).</summary>
    private static readonly HashSet<string> PassThrough = [];

    private async Task<JsonElement> DocumentAsync() =>
        JsonDocument.Parse(await fixture.Factory.CreateClient().GetStringAsync("/openapi/v1.json")).RootElement;

    private static IEnumerable<(string Path, string Method, JsonElement Operation)> Operations(JsonElement document) =>
        document.GetProperty("paths").EnumerateObject().SelectMany(path => path.Value.EnumerateObject()
            .Where(op => Methods.Contains(op.Name))
            .Select(op => (path.Name, op.Name, op.Value)));

    private static string? Ref(JsonElement content, string mediaType) =>
        content.TryGetProperty(mediaType, out var media) && media.TryGetProperty("schema", out var schema)
            ? RefIn(schema)
            : null;

    /// <summary>The schema a body refers to, also through <c>oneOf: [null, $ref]</c> (an optional body).</summary>
    private static string? RefIn(JsonElement schema)
    {
        if (schema.TryGetProperty("$ref", out var reference)) return reference.GetString()!.Split('/')[^1];
        return schema.TryGetProperty("oneOf", out var oneOf) ? oneOf.EnumerateArray().Select(RefIn).FirstOrDefault(r => r is not null) : null;
    }

    /// <summary>Operation ids that all extend the shortest one (<c>tools.invoke</c>, <c>tools.invoke_by_name</c>): one operation at several addresses.</summary>
    private static bool OneOperation(IEnumerable<string> operations)
    {
        var ids = operations.ToList();
        var first = ids.MinBy(id => id.Length)!;
        return ids.All(id => id == first || id.StartsWith(first + "_", StringComparison.Ordinal) || id.StartsWith(first + ".", StringComparison.Ordinal));
    }

    private static string Name(JsonElement operation) =>
        operation.TryGetProperty("operationId", out var id) ? id.GetString()! : throw new Xunit.Sdk.XunitException(
            $"an operation has no operationId (name its endpoint with .WithName): {operation.GetRawText()[..Math.Min(300, operation.GetRawText().Length)]}");

    private static string Tag(JsonElement operation) => operation.GetProperty("tags")[0].GetString()!;

    [Fact]
    public async Task No_two_operations_share_a_request_schema_and_responses_are_shared_only_inside_an_area()
    {
        var document = await DocumentAsync();
        var operations = Operations(document).ToList();
        Assert.True(operations.Count > 40, $"only {operations.Count} operations in the document");

        // JSON bodies; a stream (text/event-stream) or another media type is not a schema to share.
        var requests = operations
            .Where(o => o.Operation.TryGetProperty("requestBody", out var body) && body.GetProperty("content").TryGetProperty("application/json", out _))
            .Select(o => (Op: Name(o.Operation), Schema: Ref(o.Operation.GetProperty("requestBody").GetProperty("content"), "application/json")))
            .ToList();
        Assert.All(requests, r => Assert.True(r.Schema is not null, $"{r.Op}: the request body is not a named schema"));
        // One operation at another address may take the same body (tools.invoke and tools.invoke_by_name): its id extends the first's.
        Assert.All(requests.GroupBy(r => r.Schema).Where(g => !PassThrough.Contains(g.Key!)), g =>
        {
            Assert.True(OneOperation(g.Select(r => r.Op)), $"{g.Key} is the request body of {string.Join(", ", g.Select(r => r.Op))}");
        });

        var responses = operations.SelectMany(o => o.Operation.GetProperty("responses").EnumerateObject()
                .Where(r => r.Name.StartsWith('2') && r.Value.TryGetProperty("content", out var content) && content.TryGetProperty("application/json", out _))
                .Select(r => (Op: Name(o.Operation), Area: Tag(o.Operation), Schema: Ref(r.Value.GetProperty("content"), "application/json"))))
            .ToList();
        Assert.All(responses, r => Assert.True(r.Schema is not null, $"{r.Op}: the response body is not a named schema"));
        Assert.All(responses.GroupBy(r => r.Schema).Where(g => !PassThrough.Contains(g.Key!)), g => Assert.True(g.Select(r => r.Area).Distinct().Count() == 1 || OneOperation(g.Select(r => r.Op)),
            $"{g.Key} answers operations of different areas: {string.Join(", ", g.Select(r => r.Op))}"));
        var requestSchemas = requests.Select(r => r.Schema).Where(r => !PassThrough.Contains(r!)).ToHashSet();
        Assert.All(responses, r => Assert.False(requestSchemas.Contains(r.Schema), $"{r.Op} answers with the request schema {r.Schema}"));

        // What the shared schema used to get wrong: tools.invoke's body is the invoke body, not an integration's.
        var schemas = document.GetProperty("components").GetProperty("schemas");
        var invoke = operations.Single(o => Name(o.Operation) == "tools.invoke").Operation;
        var invokeBody = schemas.GetProperty(Ref(invoke.GetProperty("requestBody").GetProperty("content"), "application/json")!);
        Assert.Equal(["arguments", "run_id", "timeout_ms"], invokeBody.GetProperty("properties").EnumerateObject().Select(p => p.Name).Order());
        // The LLM gateway's bodies: the providers' common fields, other properties allowed (they pass through).
        foreach (var (operation, fields) in new[]
        {
            ("llm.invoke", new[] { "model", "messages", "stream", "stream_options", "tools", "tool_choice", "max_tokens" }),
            ("llm.invoke.embeddings", ["model", "input", "dimensions"]),
            ("llm.invoke.messages", ["model", "max_tokens", "messages", "system", "tools", "stop_sequences"]),
        })
        {
            var op = operations.Single(o => Name(o.Operation) == operation).Operation;
            var body = schemas.GetProperty(Ref(op.GetProperty("requestBody").GetProperty("content"), "application/json")!);
            var properties = body.GetProperty("properties").EnumerateObject().Select(p => p.Name).ToHashSet();
            Assert.All(fields, f => Assert.Contains(f, properties));
            Assert.False(body.TryGetProperty("additionalProperties", out var extra) && extra.ValueKind == JsonValueKind.False, $"{operation} refuses unknown fields");
            if (!op.GetProperty("responses").TryGetProperty("200", out var ok) || !ok.TryGetProperty("content", out var okContent)) throw new Xunit.Sdk.XunitException(operation + op.GetProperty("responses").GetRawText());
            var answer = Ref(okContent, "application/json")!;
            Assert.True(schemas.GetProperty(answer).GetProperty("properties").TryGetProperty("model", out _), $"{operation} answers {answer}");
        }
        Assert.Equal(["stop", "length", "tool_calls", "content_filter", "function_call"], schemas.GetProperty("ChatCompletionChoice").GetProperty("properties")
            .GetProperty("finish_reason").GetProperty("enum").EnumerateArray().Where(v => v.ValueKind == JsonValueKind.String).Select(v => v.GetString()));
        Assert.All(
            System.Text.RegularExpressions.Regex.Matches(document.GetRawText(), "#/components/schemas/([A-Za-z0-9]+)").Select(m => m.Groups[1].Value),
            id => Assert.True(schemas.TryGetProperty(id, out _), $"{id} is referenced but not declared"));
        foreach (var bare in new[] { "Body", "Command", "Response", "Query", "ProblemDetails", "HttpValidationProblemDetails" })
        {
            Assert.False(schemas.TryGetProperty(bare, out _), $"schema {bare} is ambiguous");
        }
    }

    [Fact]
    public void Two_types_that_would_get_one_schema_id_stop_the_document()
    {
        var options = JsonSerializerOptions.Default;
        Assert.EndsWith("CollidingSliceRequest", OpenApiSchemaIds.For(options.GetTypeInfo(typeof(CollidingSlice.Body))), StringComparison.Ordinal);
        var error = Assert.Throws<InvalidOperationException>(() => OpenApiSchemaIds.For(options.GetTypeInfo(typeof(CollidingSlice.Command))));
        Assert.Contains("CollidingSliceRequest", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Operations_that_need_a_key_carry_the_security_requirement_with_their_scope_and_their_problem_responses()
    {
        var document = await DocumentAsync();
        var schemes = document.GetProperty("components").GetProperty("securitySchemes");
        Assert.Equal("bearer", schemes.GetProperty(ApiDocument.BearerScheme).GetProperty("scheme").GetString());
        Assert.Equal("X-Api-Key", schemes.GetProperty(ApiDocument.ApiKeyScheme).GetProperty("name").GetString());

        var endpoints = fixture.Factory.Services.GetRequiredService<EndpointDataSource>().Endpoints
            .Where(e => e.Metadata.GetMetadata<IEndpointNameMetadata>() is not null)
            .ToDictionary(e => e.Metadata.GetMetadata<IEndpointNameMetadata>()!.EndpointName);
        var scopes = typeof(IOperation).Assembly.GetTypes()
            .Where(t => t is { IsClass: true, IsAbstract: false } && typeof(IOperation).IsAssignableFrom(t))
            .ToDictionary(t => (string)t.GetProperty(nameof(IOperation.Operation))!.GetValue(null)!, t => (string)t.GetProperty(nameof(IOperation.Scope))!.GetValue(null)!);

        foreach (var (path, method, operation) in Operations(document))
        {
            var name = Name(operation);
            var metadata = endpoints[name].Metadata;
            var needsKey = metadata.GetMetadata<IAuthorizeData>() is not null && metadata.GetMetadata<IAllowAnonymous>() is null;
            var responses = operation.GetProperty("responses");
            Assert.True(needsKey == operation.TryGetProperty("security", out var security), $"{name}: security requirement {(needsKey ? "missing" : "on an anonymous operation")}");
            Assert.True(needsKey == responses.TryGetProperty("401", out _), $"{name}: 401 {(needsKey ? "missing" : "on an anonymous operation")}");
            if (needsKey)
            {
                Assert.True(responses.TryGetProperty("403", out _), $"{name}: 403 missing");
                var requirements = security.EnumerateArray().SelectMany(r => r.EnumerateObject()).ToList();
                Assert.Equal([ApiDocument.ApiKeyScheme, ApiDocument.BearerScheme], requirements.Select(r => r.Name).Order());
                if (scopes.TryGetValue(name, out var scope))
                {
                    Assert.All(requirements, r => Assert.Equal([scope], r.Value.EnumerateArray().Select(s => s.GetString())));
                }
            }
            if (path.Contains('{', StringComparison.Ordinal)) Assert.True(responses.TryGetProperty("404", out _), $"{name}: 404 missing");
            if (operation.TryGetProperty("requestBody", out _)) Assert.True(responses.TryGetProperty("413", out _), $"{name}: 413 missing");
            if (method == "post")
            {
                Assert.True(responses.TryGetProperty("409", out _), $"{name}: 409 (Idempotency-Key reused) missing");
                Assert.Contains(operation.GetProperty("parameters").EnumerateArray(), p => p.GetProperty("name").GetString() == IdempotencyKeys.Header);
            }
            foreach (var response in responses.EnumerateObject().Where(r => int.Parse(r.Name, System.Globalization.CultureInfo.InvariantCulture) >= 400))
            {
                // Every error answer has a body: problem details with the Problem schema unless the slice declared its own kind.
                var content = response.Value.GetProperty("content");
                Assert.NotEmpty(content.EnumerateObject());
                if (content.TryGetProperty(ApiDocument.ProblemMediaType, out _))
                {
                    Assert.Equal(ApiDocument.ProblemSchema, Ref(content, ApiDocument.ProblemMediaType));
                }
            }
            var problems = responses.EnumerateObject().Count(r => r.Value.TryGetProperty("content", out var c) && c.TryGetProperty(ApiDocument.ProblemMediaType, out _));
            Assert.True(problems > 0, $"{name}: no problem response");
        }
        Assert.All(new[] { "tools.invoke", "datasources.query" }, name =>
            Assert.True(Operations(document).Single(o => Name(o.Operation) == name).Operation.GetProperty("responses").TryGetProperty("429", out _)));
    }

    [Fact]
    public async Task A_real_problem_answer_has_the_members_the_problem_schema_describes()
    {
        var document = await DocumentAsync();
        var problem = document.GetProperty("components").GetProperty("schemas").GetProperty(ApiDocument.ProblemSchema);
        var described = problem.GetProperty("properties").EnumerateObject().Select(p => p.Name).ToHashSet();

        var client = await fixture.Factory.ClientForAsync(TestEnvironment.NewTenant());
        var notFound = await client.GetAsync($"/integrations/{Guid.NewGuid()}");
        Assert.Equal(HttpStatusCode.NotFound, notFound.StatusCode);
        var invalid = await client.PostAsync("/integrations", new StringContent("""{"name":"","provider":"nope"}""", System.Text.Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, invalid.StatusCode);

        foreach (var answer in new[] { notFound, invalid })
        {
            Assert.Equal(ApiDocument.ProblemMediaType, answer.Content.Headers.ContentType?.MediaType);
            var body = JsonDocument.Parse(await answer.Content.ReadAsStringAsync()).RootElement;
            Assert.All(body.EnumerateObject(), member => Assert.Contains(member.Name, described));
            Assert.All(problem.GetProperty("required").EnumerateArray(), required => Assert.True(body.TryGetProperty(required.GetString()!, out _)));
        }
    }

    [Fact]
    public async Task Numbers_are_never_strings_string_sets_are_enums_and_the_main_operations_have_examples()
    {
        var document = await DocumentAsync();
        var json = document.GetRawText();
        Assert.DoesNotContain("\"pattern\":\"^-?(?:0|[1-9]\\\\d*)", json.Replace(" ", "", StringComparison.Ordinal), StringComparison.Ordinal);
        foreach (var type in Descendants(document).Where(e => e.ValueKind == JsonValueKind.Object && e.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.Array))
        {
            var kinds = type.GetProperty("type").EnumerateArray().Select(k => k.GetString()).ToList();
            Assert.False(kinds.Contains("string") && (kinds.Contains("integer") || kinds.Contains("number")), $"typed {string.Join("|", kinds)}");
        }

        var schemas = document.GetProperty("components").GetProperty("schemas");
        Assert.Equal(Integration.Statuses, Enum(schemas.GetProperty("Integration").GetProperty("properties").GetProperty("status")));
        Assert.Equal(Integration.Providers, Enum(schemas.GetProperty("CreateIntegrationRequest").GetProperty("properties").GetProperty("provider")));
        Assert.Equal(["low", "medium", "high", "critical"], Enum(schemas.GetProperty("McpTool").GetProperty("properties").GetProperty("risk_level")));
        Assert.Equal(["completed", "tool_error"], Enum(schemas.GetProperty("InvokeMcpToolResponse").GetProperty("properties").GetProperty("outcome")));
        Assert.Equal([.. Scopes.All], Enum(schemas.GetProperty("CreateApiKeyRequest").GetProperty("properties").GetProperty("scopes").GetProperty("items")));
        var query = Operations(document).Single(o => Name(o.Operation) == "integrations.query").Operation;
        Assert.Equal(Integration.Providers, Enum(query.GetProperty("parameters").EnumerateArray().Single(p => p.GetProperty("name").GetString() == "provider").GetProperty("schema")));

        foreach (var name in new[] { "integrations.create", "credentials.store", "mcp_servers.register", "tools.invoke", "datasources.query", "datasources.register" })
        {
            var operation = Operations(document).Single(o => Name(o.Operation) == name).Operation;
            Assert.True(operation.GetProperty("requestBody").GetProperty("content").GetProperty("application/json").TryGetProperty("example", out _), $"{name} has no example");
        }
    }

    private static string[] Enum(JsonElement schema) => [.. schema.GetProperty("enum").EnumerateArray().Where(v => v.ValueKind != JsonValueKind.Null).Select(v => v.GetString()!)];

    private static IEnumerable<JsonElement> Descendants(JsonElement element)
    {
        yield return element;
        var children = element.ValueKind switch
        {
            JsonValueKind.Object => element.EnumerateObject().Select(p => p.Value),
            JsonValueKind.Array => element.EnumerateArray(),
            _ => [],
        };
        foreach (var descendant in children.SelectMany(Descendants)) yield return descendant;
    }

    private static class CollidingSlice
    {
        public sealed record Body(string Name);

        public sealed record Command(string Name);
    }
}
