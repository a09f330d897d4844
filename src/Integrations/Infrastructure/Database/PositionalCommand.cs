using Npgsql;
using NpgsqlTypes;

namespace Integrations.Infrastructure.Database;

/// <summary>
/// Batch statements with positional parameters (<c>$1</c>, <c>$2</c>, ...): Npgsql sends their text as it is, without
/// parsing it for named placeholders on every execution, which matters on hot paths and costs nothing elsewhere.
/// </summary>
public static class PositionalCommand
{
    /// <summary>A statement with <paramref name="values"/> as <c>$1</c>, <c>$2</c>, ...; a value that is already a parameter is added as it is.</summary>
    public static NpgsqlBatchCommand Of(string sql, params object[] values)
    {
        var command = new NpgsqlBatchCommand(sql);
        foreach (var value in values) command.Parameters.Add(value as NpgsqlParameter ?? new NpgsqlParameter { Value = value });
        return command;
    }

    /// <summary>A text parameter that may be SQL NULL (a bare null has no type to send).</summary>
    public static NpgsqlParameter Text(string? value) => new() { NpgsqlDbType = NpgsqlDbType.Text, Value = (object?)value ?? DBNull.Value };

    /// <summary>A uuid parameter that may be SQL NULL.</summary>
    public static NpgsqlParameter Uuid(Guid? value) => new() { NpgsqlDbType = NpgsqlDbType.Uuid, Value = (object?)value ?? DBNull.Value };
}
