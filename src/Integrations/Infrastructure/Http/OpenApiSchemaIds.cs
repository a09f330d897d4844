using System.Text.Json.Serialization.Metadata;
using Microsoft.AspNetCore.OpenApi;

namespace Integrations.Infrastructure.Http;

/// <summary>
/// Schema ids for the OpenAPI document. Slices nest their types under the operation (<c>UpdateIntegration.Body</c>,
/// <c>DisableMcpServer.Body</c>); by the bare type name they would share one schema, and which type it described
/// would depend on the order the routes were mapped in. A nested type is named with its declaring types
/// (<c>UpdateIntegrationBody</c>), a generic one with its arguments (<c>PageOfIncidentResponse</c>).
/// </summary>
public static class OpenApiSchemaIds
{
    public static string? For(JsonTypeInfo type) =>
        OpenApiOptions.CreateDefaultSchemaReferenceId(type) is null ? null : Name(type.Type);

    private static string Name(Type type)
    {
        if (Nullable.GetUnderlyingType(type) is { } underlying) return Name(underlying);
        var name = type.Name;
        if (type.IsGenericType)
        {
            name = name[..name.IndexOf('`', StringComparison.Ordinal)] + "Of" + string.Join("And", type.GetGenericArguments().Select(Name));
        }
        return type.IsNested && !type.IsGenericParameter ? Name(type.DeclaringType!) + name : name;
    }
}
