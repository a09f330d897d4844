using Integrations.Features.McpGateway;

namespace Integrations.Tests.McpGateway;

public sealed class GatewayToolNamesTests
{
    private static string[] Assign(params (string Server, string Tool, Guid Id)[] tools) => GatewayToolNames.Assign(tools, t => t);

    [Theory]
    [InlineData("everything", "echo", "everything__echo")]
    [InlineData("My Server", "get sum", "My_Server__get_sum")]
    [InlineData("crm.prod", "contacts/search", "crm.prod__contacts_search")]
    [InlineData("Ünïcode", "tool", "_n_code__tool")]
    [InlineData("", "x", "___x")]
    public void Names_are_server__tool_with_other_characters_made_underscores(string server, string tool, string expected) =>
        Assert.Equal(expected, GatewayToolNames.Candidate(server, tool));

    [Fact]
    public void Names_are_cut_at_128_characters_and_stay_valid()
    {
        var name = GatewayToolNames.Candidate(new string('s', 100), new string('t', 100));
        Assert.Equal(128, name.Length);
        Assert.Matches("^[A-Za-z0-9_.-]{1,128}$", name);
    }

    [Fact]
    public void A_collision_leaves_the_first_its_name_and_suffixes_the_later_ones_with_their_tool_ids()
    {
        var (a, b, c) = (Guid.Parse("11111111-0000-0000-0000-000000000001"), Guid.Parse("22222222-0000-0000-0000-000000000002"), Guid.NewGuid());
        var names = Assign(("crm", "a b", a), ("crm", "a_b", b), ("other", "echo", c));

        Assert.Equal(["crm__a_b", "crm__a_b-22222222", "other__echo"], names);
    }

    [Fact]
    public void A_suffixed_name_that_is_taken_too_gets_the_whole_tool_id()
    {
        var (a, b, c) = (Guid.NewGuid(), Guid.Parse("33333333-0000-0000-0000-000000000003"), Guid.Parse("33333333-0000-0000-0000-000000000004"));
        var names = Assign(("s", "x", a), ("s", "x-33333333", b), ("s ", "x", c)); // the third is "s___x", no collision
        Assert.Equal(["s__x", "s__x-33333333", "s___x"], names);

        var clash = Assign(("s", "x-33333333", b), ("s", "x", a), ("s_", "x", c));
        Assert.Equal("s__x-33333333", clash[0]);
        Assert.Equal("s__x", clash[1]);
        Assert.Equal(["s___x"], clash[2..]);
        var forced = Assign(("s", "x", a), ("s", "x-33333333", Guid.NewGuid()), ("s", "x", c));
        Assert.Equal("s__x-" + c.ToString("N"), forced[2]);
        Assert.Equal(3, forced.Distinct().Count());
    }
}
