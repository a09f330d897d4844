using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using Integrations.Common;

namespace Integrations.Api.AdminConsole;

/// <summary>
/// Two texts compared line by line for a person to read side by side: the longest common subsequence of lines stays
/// level on both sides, and a run of removed lines is paired with the run of added lines that replaced it.
/// </summary>
public static class LineDiff
{
    public enum Kind
    {
        Same,
        Changed,
        Removed,
        Added,
    }

    /// <summary>One row of the side-by-side view; a side is null when the line exists only on the other.</summary>
    public sealed record Row(Kind Kind, int? LeftNumber, string? Left, int? RightNumber, string? Right);

    /// <summary>JSON as a reviewer reads it: keys in canonical order, one member per line, indented.</summary>
    public static string Readable(JsonElement json) =>
        JsonNode.Parse(CanonicalJson.Serialize(json))!.ToJsonString(new JsonSerializerOptions { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping });

    public static IReadOnlyList<Row> Compare(string left, string right)
    {
        var a = left.Split('\n');
        var b = right.Split('\n');
        // lcs[i, j]: the length of the longest common subsequence of a[i..] and b[j..]
        var lcs = new int[a.Length + 1, b.Length + 1];
        for (var i = a.Length - 1; i >= 0; i--)
        {
            for (var j = b.Length - 1; j >= 0; j--)
            {
                lcs[i, j] = a[i] == b[j] ? lcs[i + 1, j + 1] + 1 : Math.Max(lcs[i + 1, j], lcs[i, j + 1]);
            }
        }

        var rows = new List<Row>();
        var removed = new List<int>();
        var added = new List<int>();
        void Flush()
        {
            for (var k = 0; k < Math.Max(removed.Count, added.Count); k++)
            {
                int? l = k < removed.Count ? removed[k] : null;
                int? r = k < added.Count ? added[k] : null;
                var kind = l is not null && r is not null ? Kind.Changed : l is not null ? Kind.Removed : Kind.Added;
                rows.Add(new Row(kind, l + 1, l is { } li ? a[li] : null, r + 1, r is { } ri ? b[ri] : null));
            }
            removed.Clear();
            added.Clear();
        }

        int x = 0, y = 0;
        while (x < a.Length || y < b.Length)
        {
            if (x < a.Length && y < b.Length && a[x] == b[y])
            {
                Flush();
                rows.Add(new Row(Kind.Same, x + 1, a[x], y + 1, b[y]));
                x++;
                y++;
            }
            else if (y == b.Length || (x < a.Length && lcs[x + 1, y] >= lcs[x, y + 1]))
            {
                removed.Add(x++);
            }
            else
            {
                added.Add(y++);
            }
        }
        Flush();
        return rows;
    }
}
