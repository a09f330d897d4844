using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Integrations.Tests.Support;

namespace Integrations.Tests.Platform;

/// <summary>
/// <see cref="Integrations.Infrastructure.Http.RequestText"/>: NUL, lone surrogates and bytes that are not UTF-8 are
/// refused at the edge, in every string of every operation, as 400 <c>validation_failed</c> naming the field.
/// </summary>
public sealed class RequestTextTests(ApiFixture fixture) : IClassFixture<ApiFixture>
{
    private ApiFactory Api => fixture.Factory;

    /// <summary>Stands for a bad value in a body while it is built; replaced by the bytes of each bad value.</summary>
    private const string Marker = "@@bad@@";

    /// <summary>As they appear inside a JSON string: a NUL escape, a lone surrogate escape, a raw NUL-free invalid UTF-8 byte.</summary>
    private static readonly (string Name, byte[] Json)[] BadJsonStrings =
    [
        ("nul", Encoding.ASCII.GetBytes("a\\u0000b")),
        ("lone surrogate", Encoding.ASCII.GetBytes("a\\ud800b")),
        ("lone low surrogate", Encoding.ASCII.GetBytes("\\udc00")),
        ("invalid utf-8", [(byte)'a', 0xFF, (byte)'b']),
        ("encoded surrogate", [0xED, 0xA0, 0x80]),
    ];

    /// <summary>As they appear in a path segment or a query value: percent-escaped bytes.</summary>
    private static readonly string[] BadEscaped = ["a%00b", "%ED%A0%80", "a%FFb", "%C0%80"];

    private static async Task<JsonElement> JsonAsync(HttpResponseMessage response) =>
        JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;

    private static async Task<(HttpStatusCode Status, string? Code, JsonElement Body)> AnswerAsync(HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        var body = text.Length == 0 ? default : JsonDocument.Parse(text).RootElement;
        // The LLM gateway (/v1) answers OpenAI's shape: the same fields, under "error".
        if (body.ValueKind == JsonValueKind.Object && body.TryGetProperty("error", out var openAi) && openAi.ValueKind == JsonValueKind.Object) body = openAi;
        var code = body.ValueKind == JsonValueKind.Object && body.TryGetProperty("code", out var c) ? c.GetString() : null;
        return (response.StatusCode, code, body);
    }

    private static ByteArrayContent JsonBody(byte[] bytes) =>
        new ByteArrayContent(bytes) { Headers = { ContentType = new MediaTypeHeaderValue("application/json") } };

    private static byte[] WithBad(string json, byte[] bad)
    {
        var bytes = Encoding.UTF8.GetBytes(json);
        var marker = Encoding.UTF8.GetBytes(Marker);
        var at = bytes.AsSpan().IndexOf(marker);
        Assert.True(at >= 0);
        return [.. bytes[..at], .. bad, .. bytes[(at + marker.Length)..]];
    }

    [Fact]
    public async Task Every_string_field_of_every_operation_refuses_nul_lone_surrogates_and_invalid_utf8_with_a_4xx_and_a_code()
    {
        var client = await Api.ClientForAsync(TestEnvironment.NewTenant());
        var document = JsonNode.Parse(await client.GetStringAsync("/openapi/v1.json"))!;
        var schemas = document["components"]?["schemas"]?.AsObject();
        var failures = new List<string>();
        var probes = 0;

        foreach (var (template, pathItem) in document["paths"]!.AsObject())
        {
            foreach (var (method, operationNode) in pathItem!.AsObject())
            {
                if (operationNode is not JsonObject operation || method == "parameters") continue;
                var parameters = operation["parameters"]?.AsArray().Select(p => p!.AsObject()).ToList() ?? [];
                var pathValues = parameters.Where(p => (string?)p["in"] == "path").ToDictionary(p => (string)p["name"]!, p => SampleFor(p["schema"], schemas) is JsonValue v && v.TryGetValue<string>(out var s) ? s : "1");
                string PathWith(string? name, string? value) =>
                    pathValues.Aggregate(template, (path, p) => System.Text.RegularExpressions.Regex.Replace(path, $"{{{p.Key}(:[^}}]*)?}}", p.Key == name ? value! : Uri.EscapeDataString(p.Value)));
                var bodySchema = operation["requestBody"]?["content"]?["application/json"]?["schema"];
                var body = bodySchema is null ? null : SampleFor(bodySchema, schemas);
                var bodyText = body?.ToJsonString();

                async Task ProbeAsync(string what, HttpRequestMessage request, string? expectedField)
                {
                    probes++;
                    var (status, code, answer) = await AnswerAsync(await client.SendAsync(request));
                    var label = $"{method.ToUpperInvariant()} {template} {what}: {(int)status} {code}";
                    if ((int)status is < 400 or >= 500 || code is null) failures.Add(label);
                    else if (expectedField is not null && (code != "validation_failed" || !answer.GetProperty("errors").TryGetProperty(expectedField, out _)))
                    {
                        failures.Add($"{label} (expected validation_failed naming {expectedField}: {answer})");
                    }
                }

                HttpRequestMessage Request(string path, byte[]? bytes) => new(new HttpMethod(method.ToUpperInvariant()), path)
                {
                    Content = bytes is null ? (bodyText is null ? null : JsonBody(Encoding.UTF8.GetBytes(bodyText))) : JsonBody(bytes),
                };

                foreach (var name in pathValues.Keys)
                {
                    // a NUL in a path: the test server's client refuses to send it, Kestrel answers 400 before the pipeline (Kestrel tests)
                    foreach (var bad in BadEscaped.Where(b => !b.Contains("%00", StringComparison.Ordinal))) await ProbeAsync($"path {name}={bad}", Request(PathWith(name, bad), null), null);
                }
                foreach (var query in parameters.Where(p => (string?)p["in"] == "query"))
                {
                    var name = (string)query["name"]!;
                    foreach (var bad in BadEscaped) await ProbeAsync($"query {name}={bad}", Request($"{PathWith(null, null)}?{name}={bad}", null), name);
                }
                if (body is null) continue;
                foreach (var (field, withMarker) in StringFieldsOf(body, ""))
                {
                    foreach (var (badName, bad) in BadJsonStrings)
                    {
                        await ProbeAsync($"body {field} {badName}", Request(PathWith(null, null), WithBad(withMarker.ToJsonString(), bad)), field);
                    }
                }
            }
        }

        Assert.True(probes > 200, $"only {probes} probes: the walk of the document found too little");
        Assert.Empty(failures);
    }

    /// <summary>
    /// Every string in <paramref name="value"/> (property values, array items, and a property name added to each
    /// object), with the document in which that one string is the marker, named as the edge names it.
    /// </summary>
    private static IEnumerable<(string Field, JsonNode Document)> StringFieldsOf(JsonNode value, string path)
    {
        var root = value.Root;
        switch (value)
        {
            case JsonObject obj:
                foreach (var (name, child) in obj.ToList())
                {
                    var field = path.Length == 0 ? name : $"{path}.{name}";
                    if (child is JsonValue leaf && leaf.GetValueKind() == JsonValueKind.String)
                    {
                        var copy = root.DeepClone();
                        Find(copy, field)!.ReplaceWith(JsonValue.Create(Marker));
                        yield return (field, copy);
                    }
                    else if (child is not null)
                    {
                        foreach (var inner in StringFieldsOf(child, field)) yield return inner;
                    }
                }
                var named = root.DeepClone();
                (path.Length == 0 ? named : Find(named, path))!.AsObject()[Marker] = "x";
                yield return (path.Length == 0 ? "body" : path, named);
                break;
            case JsonArray array when array.Count > 0:
                var first = $"{path}[0]";
                if (array[0] is JsonValue item && item.GetValueKind() == JsonValueKind.String)
                {
                    var copy = root.DeepClone();
                    Find(copy, first)!.ReplaceWith(JsonValue.Create(Marker));
                    yield return (first, copy);
                }
                else if (array[0] is not null)
                {
                    foreach (var inner in StringFieldsOf(array[0]!, first)) yield return inner;
                }
                break;
        }
    }

    private static JsonNode? Find(JsonNode root, string path)
    {
        var node = root;
        foreach (var part in System.Text.RegularExpressions.Regex.Matches(path, @"[^.\[\]]+|\[\d+\]").Select(m => m.Value))
        {
            node = part[0] == '[' ? node![int.Parse(part[1..^1], System.Globalization.CultureInfo.InvariantCulture)] : node![part];
        }
        return node;
    }

    /// <summary>A value of <paramref name="schema"/> with every property present, strings as "x", one item per array, one entry per map.</summary>
    private static JsonNode? SampleFor(JsonNode? schema, JsonObject? schemas, int depth = 0)
    {
        if (schema is null || depth > 8) return null;
        if (schema["$ref"] is { } reference) return SampleFor(schemas?[((string)reference!).Split('/')[^1]], schemas, depth + 1);
        foreach (var combinator in new[] { "oneOf", "anyOf", "allOf" })
        {
            if (schema[combinator] is JsonArray options)
            {
                var chosen = options.FirstOrDefault(o => o?["type"]?.ToString() != "null") ?? options.FirstOrDefault();
                return SampleFor(chosen, schemas, depth + 1);
            }
        }
        var types = schema["type"] switch
        {
            JsonArray many => many.Select(t => (string)t!).ToList(),
            JsonValue one => [(string)one!],
            _ => schema["properties"] is not null ? ["object"] : [],
        };
        var type = types.FirstOrDefault(t => t != "null");
        switch (type)
        {
            case "string":
                var format = (string?)schema["format"];
                return JsonValue.Create(format switch { "uuid" => Guid.NewGuid().ToString(), "uri" => "https://example.com/", "date-time" => "2026-01-01T00:00:00Z", _ => "x" });
            case "integer":
            case "number":
                return JsonValue.Create(1);
            case "boolean":
                return JsonValue.Create(true);
            case "array":
                return new JsonArray(SampleFor(schema["items"], schemas, depth + 1));
            case "object":
                var result = new JsonObject();
                foreach (var (name, property) in schema["properties"]?.AsObject() ?? [])
                {
                    result[name] = SampleFor(property, schemas, depth + 1);
                }
                if (schema["additionalProperties"] is JsonObject map) result["key"] = SampleFor(map, schemas, depth + 1) ?? "x";
                return result;
            default:
                return JsonValue.Create("x"); // a schema that says nothing (a JsonElement): any JSON, so a string
        }
    }

    [Fact]
    public async Task A_nul_in_a_name_is_refused_naming_the_field()
    {
        var client = await Api.ClientForAsync(TestEnvironment.NewTenant());

        var response = await client.PostAsync("/integrations", JsonBody(Encoding.UTF8.GetBytes("""{"name":"a\u0000b","provider":"openai"}""")));

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var problem = await JsonAsync(response);
        Assert.Equal("validation_failed", problem.GetProperty("code").GetString());
        Assert.Contains("NUL", problem.GetProperty("errors").GetProperty("name")[0].GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_lone_surrogate_deep_in_tool_arguments_is_refused_naming_its_path_and_a_pair_is_text()
    {
        var client = await Api.ClientForAsync(TestEnvironment.NewTenant());
        var path = $"/integrations/mcp-servers/{Guid.NewGuid()}/tools/{Guid.NewGuid()}/invoke";

        var lone = await client.PostAsync(path, JsonBody(Encoding.UTF8.GetBytes("""{"arguments":{"q":{"deep":["ok","\ud83d"]}}}""")));
        var pair = await client.PostAsync(path, JsonBody(Encoding.UTF8.GetBytes("""{"arguments":{"q":{"deep":["ok","\ud83d\ude00"]}}}""")));

        Assert.Equal(HttpStatusCode.BadRequest, lone.StatusCode);
        Assert.Contains("surrogate", (await JsonAsync(lone)).GetProperty("errors").GetProperty("arguments.q.deep[1]")[0].GetString(), StringComparison.Ordinal);
        Assert.Equal("not_found", (await JsonAsync(pair)).GetProperty("code").GetString()); // past the edge: the server does not exist
    }

    [Fact]
    public async Task Bytes_that_are_not_utf8_are_refused_in_a_body_and_a_nul_in_the_query()
    {
        var client = await Api.ClientForAsync(TestEnvironment.NewTenant());

        var body = await client.PostAsync("/credentials", JsonBody(WithBad($$"""{"name":"{{Marker}}","value":"s"}""", [0xC3, 0x28])));
        var query = await client.GetAsync($"/integrations/mcp-servers/{Guid.NewGuid()}/invocations?run_id=%00");

        Assert.Equal(HttpStatusCode.BadRequest, body.StatusCode);
        Assert.Contains("UTF-8", (await JsonAsync(body)).GetProperty("errors").GetProperty("name")[0].GetString(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.BadRequest, query.StatusCode);
        Assert.True((await JsonAsync(query)).GetProperty("errors").TryGetProperty("run_id", out _));
    }

    [Fact]
    public async Task A_nul_in_an_api_key_header_is_refused_before_authentication()
    {
        var client = Api.CreateClient();
        var request = new HttpRequestMessage(HttpMethod.Get, "/integrations");
        Assert.True(request.Headers.TryAddWithoutValidation("X-Api-Key", "key\0rest"));

        var response = await client.SendAsync(request);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.True((await JsonAsync(response)).GetProperty("errors").TryGetProperty("X-Api-Key", out _));
    }
}
