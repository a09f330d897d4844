using System.Buffers.Text;
using FluentValidation;

namespace Integrations.Common;

/// <summary>Opaque keyset cursors: the last row's key, base64url-encoded.</summary>
public static class Cursor
{
    public static string Encode(Guid lastId) => Base64Url.EncodeToString(lastId.ToByteArray(bigEndian: true));

    public static string Encode(long lastSeq) => Base64Url.EncodeToString(BitConverter.GetBytes(lastSeq));

    public static bool TryDecode(string? cursor, out Guid lastId)
    {
        lastId = Guid.Empty;
        if (string.IsNullOrEmpty(cursor)) return true;
        if (Decode(cursor) is not { Length: 16 } bytes) return false;
        lastId = new Guid(bytes, bigEndian: true);
        return true;
    }

    public static bool TryDecode(string? cursor, out long lastSeq)
    {
        lastSeq = long.MaxValue;
        if (string.IsNullOrEmpty(cursor)) return true;
        if (Decode(cursor) is not { Length: 8 } bytes) return false;
        lastSeq = BitConverter.ToInt64(bytes);
        return lastSeq > 0;
    }

    /// <summary>A cursor naming a row by a unique name (the gateway's tools, which are ordered by name).</summary>
    public static string EncodeName(string lastName) => Base64Url.EncodeToString(System.Text.Encoding.UTF8.GetBytes(lastName));

    public static bool TryDecodeName(string? cursor, out string? lastName)
    {
        lastName = null;
        if (string.IsNullOrEmpty(cursor)) return true;
        if (cursor.Length > 1024) return false;
        try
        {
            lastName = System.Text.Encoding.UTF8.GetString(Base64Url.DecodeFromChars(cursor));
            return lastName.Length > 0;
        }
        catch (FormatException)
        {
            return false;
        }
    }

    private static byte[]? Decode(string cursor)
    {
        if (cursor.Length > 32) return null;
        try
        {
            return Base64Url.DecodeFromChars(cursor);
        }
        catch (FormatException)
        {
            return null;
        }
    }
}

public sealed record Page<T>(IReadOnlyList<T> Items, string? NextCursor);

public static class Paging
{
    /// <summary>
    /// Turns rows fetched with <c>LIMIT limit + 1</c> into a page: the extra row only says that another page exists,
    /// and the last row kept gives the cursor.
    /// </summary>
    public static Page<TItem> ToPage<TRow, TItem>(List<TRow> rows, int limit, Func<TRow, TItem> map, Func<TRow, string> cursorOf)
    {
        var hasMore = rows.Count > limit;
        if (hasMore) rows.RemoveAt(rows.Count - 1);
        return new Page<TItem>(rows.ConvertAll(r => map(r)), hasMore ? cursorOf(rows[^1]) : null);
    }
}

/// <summary>The rules every paged list shares: a page of 1-200 rows, and a cursor this service issued.</summary>
public static class PagingRules
{
    public const int MaxLimit = 200;

    public static IRuleBuilderOptions<T, int> PageLimit<T>(this IRuleBuilder<T, int> rule) =>
        rule.InclusiveBetween(1, MaxLimit).WithMessage($"Limit must be between 1 and {MaxLimit}.");

    /// <summary>A cursor naming a row id (every list but the audit trail).</summary>
    public static IRuleBuilderOptions<T, string?> IdCursor<T>(this IRuleBuilder<T, string?> rule) =>
        rule.Must(c => Cursor.TryDecode(c, out Guid _)).WithMessage("The cursor is not valid.");

    /// <summary>A cursor naming a row by name.</summary>
    public static IRuleBuilderOptions<T, string?> NameCursor<T>(this IRuleBuilder<T, string?> rule) =>
        rule.Must(c => Cursor.TryDecodeName(c, out _)).WithMessage("The cursor is not valid.");

    /// <summary>A cursor naming an audit sequence number.</summary>
    public static IRuleBuilderOptions<T, string?> SeqCursor<T>(this IRuleBuilder<T, string?> rule) =>
        rule.Must(c => Cursor.TryDecode(c, out long _)).WithMessage("The cursor is not valid.");
}
