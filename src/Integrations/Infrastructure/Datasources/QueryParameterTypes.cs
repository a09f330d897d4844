using System.Globalization;
using System.Text.Json;
using NpgsqlTypes;

namespace Integrations.Infrastructure.Datasources;

/// <summary>
/// The types a template parameter may declare, how each is sent to PostgreSQL (always as a bound parameter of
/// that type, never as SQL text) and how a JSON value becomes one. JSON null is SQL NULL.
/// </summary>
public static class QueryParameterTypes
{
    private sealed record Type(NpgsqlDbType DbType, Func<JsonElement, object?> Convert, string Expects);

    private static readonly Dictionary<string, Type> Types = new(StringComparer.Ordinal)
    {
        ["text"] = new(NpgsqlDbType.Text, e => e.ValueKind == JsonValueKind.String ? e.GetString() : null, "a string"),
        ["integer"] = new(NpgsqlDbType.Integer, e => e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out var v) ? v : null, "a 32-bit integer"),
        ["bigint"] = new(NpgsqlDbType.Bigint, e => e.ValueKind == JsonValueKind.Number && e.TryGetInt64(out var v) ? v : null, "a 64-bit integer"),
        ["numeric"] = new(NpgsqlDbType.Numeric, e => e.ValueKind == JsonValueKind.Number && e.TryGetDecimal(out var v) ? v : null, "a number"),
        ["double"] = new(NpgsqlDbType.Double, e => e.ValueKind == JsonValueKind.Number && e.TryGetDouble(out var v) ? v : null, "a number"),
        ["boolean"] = new(NpgsqlDbType.Boolean, e => e.ValueKind is JsonValueKind.True or JsonValueKind.False ? e.GetBoolean() : null, "true or false"),
        ["uuid"] = new(NpgsqlDbType.Uuid, e => e.ValueKind == JsonValueKind.String && Guid.TryParse(e.GetString(), out var v) ? v : null, "a UUID string"),
        ["date"] = new(NpgsqlDbType.Date, e => e.ValueKind == JsonValueKind.String
            && DateOnly.TryParseExact(e.GetString(), "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out var v) ? v : null, "a date string yyyy-mm-dd"),
        ["timestamptz"] = new(NpgsqlDbType.TimestampTz, e => e.ValueKind == JsonValueKind.String
            && DateTimeOffset.TryParse(e.GetString(), CultureInfo.InvariantCulture, DateTimeStyles.None, out var v) ? v.UtcDateTime : null, "an ISO 8601 timestamp with offset"),
        ["text[]"] = Array<string>(NpgsqlDbType.Text, "text", "an array of strings"),
        ["integer[]"] = Array<int?>(NpgsqlDbType.Integer, "integer", "an array of 32-bit integers"),
        ["bigint[]"] = Array<long?>(NpgsqlDbType.Bigint, "bigint", "an array of 64-bit integers"),
        ["uuid[]"] = Array<Guid?>(NpgsqlDbType.Uuid, "uuid", "an array of UUID strings"),
    };

    public static IReadOnlyCollection<string> Names => Types.Keys;

    public static bool IsKnown(string? type) => type is not null && Types.ContainsKey(type);

    public static NpgsqlDbType DbType(string type) => Types[type].DbType;

    /// <summary>Whether a value of the type is written as a JSON string (a form sends typed text as is; other types as JSON).</summary>
    public static bool IsString(string type) => type is "text" or "uuid" or "date" or "timestamptz";

    /// <summary>Converts a JSON value to the declared type; the error says what was expected, never echoes the value.</summary>
    public static bool TryConvert(string type, JsonElement value, out object result, out string error)
    {
        error = string.Empty;
        if (value.ValueKind == JsonValueKind.Null)
        {
            result = DBNull.Value;
            return true;
        }
        var definition = Types[type];
        if (definition.Convert(value) is { } converted)
        {
            result = converted;
            return true;
        }
        result = DBNull.Value;
        error = $"Expected {definition.Expects} ({type}).";
        return false;
    }

    /// <summary>An array of an element type above; elements may be null.</summary>
    private static Type Array<T>(NpgsqlDbType element, string elementType, string expects) =>
        new(NpgsqlDbType.Array | element, e =>
        {
            if (e.ValueKind != JsonValueKind.Array || e.GetArrayLength() > 10_000) return null;
            var items = new T?[e.GetArrayLength()];
            var index = 0;
            foreach (var item in e.EnumerateArray())
            {
                if (item.ValueKind != JsonValueKind.Null)
                {
                    if (Types[elementType].Convert(item) is not { } value) return null;
                    items[index] = (T)value;
                }
                index++;
            }
            return items;
        }, expects);
}
