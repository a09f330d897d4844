using System.Buffers;
using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;

namespace Integrations.Common;

/// <summary>
/// One byte form per JSON value, so equal values hash equally: object members sorted by name (ordinal),
/// no insignificant whitespace, strings escaped the same way every time, numbers as they were written.
/// Used for tool definition hashes and for invocation input/output hashes. With <c>normalizeNumbers</c> a number is
/// written as its decimal value without exponent or trailing zeros (as long as it fits a <see cref="decimal"/>), so a
/// value that went through PostgreSQL's <c>jsonb</c> (which rewrites <c>1E+2</c> as <c>100</c>) keeps its form: the
/// audit trail's MACs cover details in this form.
/// </summary>
public static class CanonicalJson
{
    public static byte[] Serialize(JsonElement value) => Serialize(value, normalizeNumbers: false);

    public static byte[] Serialize(JsonElement value, bool normalizeNumbers)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = false, SkipValidation = false }))
        {
            Write(writer, value, normalizeNumbers);
        }
        return buffer.WrittenSpan.ToArray();
    }

    public static byte[] Serialize<T>(T value) => Serialize(JsonSerializer.SerializeToElement(value));

    /// <summary>Lower-case hex SHA-256 of the canonical form.</summary>
    public static string Sha256(JsonElement value) => Convert.ToHexStringLower(SHA256.HashData(Serialize(value)));

    private static void Write(Utf8JsonWriter writer, JsonElement value, bool normalizeNumbers)
    {
        switch (value.ValueKind)
        {
            case JsonValueKind.Object:
                writer.WriteStartObject();
                foreach (var property in value.EnumerateObject().OrderBy(p => p.Name, StringComparer.Ordinal))
                {
                    writer.WritePropertyName(property.Name);
                    Write(writer, property.Value, normalizeNumbers);
                }
                writer.WriteEndObject();
                break;
            case JsonValueKind.Array:
                writer.WriteStartArray();
                foreach (var item in value.EnumerateArray()) Write(writer, item, normalizeNumbers);
                writer.WriteEndArray();
                break;
            case JsonValueKind.String:
                writer.WriteStringValue(value.GetString());
                break;
            case JsonValueKind.Number when normalizeNumbers && value.TryGetDecimal(out var number):
                // Dividing by 1.000...0 drops trailing zeros from the scale; ToString then never uses an exponent.
                writer.WriteRawValue((number / 1.000000000000000000000000000000000m).ToString(CultureInfo.InvariantCulture), skipInputValidation: true);
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
