using Integrations.Api.AdminConsole;
using static Integrations.Api.AdminConsole.LineDiff;

namespace Integrations.Tests.AdminConsole;

public sealed class LineDiffTests
{
    private static string Lines(params string[] lines) => string.Join('\n', lines);

    [Fact]
    public void Common_lines_stay_level_and_a_replaced_run_is_paired_side_by_side()
    {
        var rows = Compare(Lines("{", "a", "b", "c", "}"), Lines("{", "a", "B", "c", "d", "}"));

        Assert.Equal(
            [
                new Row(Kind.Same, 1, "{", 1, "{"),
                new Row(Kind.Same, 2, "a", 2, "a"),
                new Row(Kind.Changed, 3, "b", 3, "B"),
                new Row(Kind.Same, 4, "c", 4, "c"),
                new Row(Kind.Added, null, null, 5, "d"),
                new Row(Kind.Same, 5, "}", 6, "}"),
            ],
            rows);
    }

    [Fact]
    public void Removed_lines_have_no_right_side_and_equal_texts_have_no_change()
    {
        Assert.Equal([new Row(Kind.Same, 1, "x", 1, "x"), new Row(Kind.Removed, 2, "y", null, null)], Compare(Lines("x", "y"), "x"));
        Assert.All(Compare(Lines("p", "q", "r"), Lines("p", "q", "r")), r => Assert.Equal(Kind.Same, r.Kind));
    }

    [Fact]
    public void Json_is_read_with_keys_in_canonical_order_one_member_per_line()
    {
        var json = System.Text.Json.JsonDocument.Parse("""{"b":1,"a":{"d":[1,2],"c":"x"}}""").RootElement;
        var text = Readable(json);
        Assert.True(text.IndexOf("\"a\"", StringComparison.Ordinal) < text.IndexOf("\"b\"", StringComparison.Ordinal));
        Assert.True(text.IndexOf("\"c\"", StringComparison.Ordinal) < text.IndexOf("\"d\"", StringComparison.Ordinal));
        Assert.True(text.Split('\n').Length > 5);
    }
}
