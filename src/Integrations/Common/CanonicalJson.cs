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
/// <remarks>
/// A governed call writes six canonical forms (its input and output hashes, four audit events' details), so they are
/// written with the thread's reused writer (<see cref="ThreadJsonWriter"/>) and members are sorted in a rented array.
/// </remarks>
public static class CanonicalJson
{
    public static byte[] Serialize(JsonElement value) => Serialize(value, normalizeNumbers: false);

    public static byte[] Serialize(JsonElement value, bool normalizeNumbers) => Transient(value, normalizeNumbers).ToArray();

    public static byte[] Serialize<T>(T value) => Serialize(JsonSerializer.SerializeToElement(value));

    /// <summary>Lower-case hex SHA-256 of the canonical form.</summary>
    public static string Sha256(JsonElement value)
    {
        Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(Transient(value, normalizeNumbers: false), hash);
        return Convert.ToHexStringLower(hash);
    }

    /// <summary>
    /// The canonical form in this thread's buffer: valid only until the thread's next use of it, so use it at once
    /// (hash it, decode it) and copy what must outlive that.
    /// </summary>
    internal static ReadOnlySpan<byte> Transient(JsonElement value, bool normalizeNumbers)
    {
        using var lease = ThreadJsonWriter.Rent();
        Write(lease.Writer, value, normalizeNumbers);
        return lease.Written;
    }

    private static void Write(Utf8JsonWriter writer, JsonElement value, bool normalizeNumbers)
    {
        switch (value.ValueKind)
        {
            case JsonValueKind.Object:
                WriteObject(writer, value, normalizeNumbers);
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

    private static void WriteObject(Utf8JsonWriter writer, JsonElement value, bool normalizeNumbers)
    {
        var count = value.GetPropertyCount();
        var members = ArrayPool<Member>.Shared.Rent(count);
        try
        {
            var i = 0;
            foreach (var property in value.EnumerateObject()) members[i] = new Member(property.Name, i++, property.Value);
            Array.Sort(members, 0, count, MemberOrder.Instance);
            writer.WriteStartObject();
            for (var j = 0; j < count; j++)
            {
                writer.WritePropertyName(members[j].Name);
                Write(writer, members[j].Value, normalizeNumbers);
            }
            writer.WriteEndObject();
        }
        finally
        {
            ArrayPool<Member>.Shared.Return(members, clearArray: true);
        }
    }

    private readonly record struct Member(string Name, int Position, JsonElement Value);

    /// <summary>By name (ordinal), then by position: members with the same name keep their order, as a stable sort would.</summary>
    private sealed class MemberOrder : IComparer<Member>
    {
        public static readonly MemberOrder Instance = new();

        public int Compare(Member x, Member y)
        {
            var byName = string.CompareOrdinal(x.Name, y.Name);
            return byName != 0 ? byName : x.Position.CompareTo(y.Position);
        }
    }
}
