using System.Collections.Concurrent;
using System.Text.Json.Serialization.Metadata;
using Integrations.Common;
using Microsoft.AspNetCore.OpenApi;

namespace Integrations.Infrastructure.Http;

/// <summary>
/// Schema ids for the OpenAPI document. Slices nest their types under the operation (<c>UpdateIntegration.Body</c>,
/// <c>DisableMcpServer.Body</c>); by the bare type name they would share one schema, and which type it described
/// would depend on the order the routes were mapped in. A slice's request (<c>Command</c>, <c>Body</c>, <c>Query</c>)
/// is <c>UpdateIntegrationRequest</c>, its own answer <c>InvokeMcpToolResponse</c>; the shape an area's slices share
/// (<c>Integration.Response</c>) is the area's noun, <c>Integration</c>; other nested types are named with their
/// declaring types (<c>IntegrationLimits</c>), a generic one with its arguments (<c>PageOfIncident</c>).
/// Two types that would still get one id stop the document with an error instead of sharing a schema.
/// </summary>
public static class OpenApiSchemaIds
{
    private static readonly string[] RequestNames = ["Command", "Body", "Query"];

    private static readonly ConcurrentDictionary<string, Type> Claimed = new(StringComparer.Ordinal);

    public static string? For(JsonTypeInfo type)
    {
        if (OpenApiOptions.CreateDefaultSchemaReferenceId(type) is null) return null;
        var clrType = Nullable.GetUnderlyingType(type.Type) ?? type.Type;
        var id = Name(clrType);
        var owner = Claimed.GetOrAdd(id, clrType);
        return owner == clrType
            ? id
            : throw new InvalidOperationException($"{owner.FullName} and {clrType.FullName} would share the OpenAPI schema '{id}'.");
    }

    private static string Name(Type type)
    {
        if (Nullable.GetUnderlyingType(type) is { } underlying) return Name(underlying);
        var name = type.Name;
        if (type.IsGenericType)
        {
            name = name[..name.IndexOf('`', StringComparison.Ordinal)] + "Of" + string.Join("And", type.GetGenericArguments().Select(Name));
        }
        if (!type.IsNested || type.IsGenericParameter) return name;

        var declaring = type.DeclaringType!;
        if (RequestNames.Contains(name)) return Name(declaring) + "Request";
        if (name == "Response" && !IsSlice(declaring)) return Name(declaring);
        return Name(declaring) + name;
    }

    /// <summary>A slice (one operation) nests the request that names its operation; an area's shared shapes do not.</summary>
    private static bool IsSlice(Type type) => type.GetNestedTypes().Any(t => typeof(IOperation).IsAssignableFrom(t));
}
