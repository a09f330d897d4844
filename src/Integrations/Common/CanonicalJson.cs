using System.Buffers;
using System.Security.Cryptography;
using System.Text.Json;

namespace Integrations.Common;

/// <summary>
/// One byte form per JSON value, so equal values hash equally: object members sorted by name (ordinal),
/// no insignificant whitespace, strings escaped the same way every time, numbers as they were written.
/// Used for tool definition hashes and for invocation input/output hashes.
/// </summary>
public static class CanonicalJson
{
    public static byte[] Serialize(JsonElement value)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = false, SkipValidation = false }))
        {
            Write(writer, value);
        }
        return buffer.WrittenSpan.ToArray();
    }

    public static byte[] Serialize<T>(T value) => Serialize(JsonSerializer.SerializeToElement(value));

    /// <summary>Lower-case hex SHA-256 of the canonical form.</summary>
    public static string Sha256(JsonElement value) => Convert.ToHexStringLower(SHA256.HashData(Serialize(value)));

    private static void Write(Utf8JsonWriter writer, JsonElement value)
    {
        switch (value.ValueKind)
        {
            case JsonValueKind.Object:
                writer.WriteStartObject();
                foreach (var property in value.EnumerateObject().OrderBy(p => p.Name, StringComparer.Ordinal))
                {
                    writer.WritePropertyName(property.Name);
                    Write(writer, property.Value);
                }
                writer.WriteEndObject();
                break;
            case JsonValueKind.Array:
                writer.WriteStartArray();
                foreach (var item in value.EnumerateArray()) Write(writer, item);
                writer.WriteEndArray();
                break;
            case JsonValueKind.String:
                writer.WriteStringValue(value.GetString());
                break;
            case JsonValueKind.Number:
                writer.WriteRawValue(value.GetRawText(), skipInputValidation: true);
                break;
            case JsonValueKind.True:
                writer.WriteBooleanValue(true);
                break;
            case JsonValueKind.False:
                writer.WriteBooleanValue(false);
                break;
            default:
                writer.WriteNullValue();
                break;
        }
    }
}
