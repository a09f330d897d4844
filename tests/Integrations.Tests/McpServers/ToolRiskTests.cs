using System.Text.Json;
using Integrations.Common;
using Integrations.Features.McpServers;
using ModelContextProtocol.Protocol;

namespace Integrations.Tests.McpServers;

public sealed class ToolRiskTests
{
    [Theory]
    [InlineData("delete_file", "critical")]
    [InlineData("removeUser", "critical")]
    [InlineData("DropTable", "critical")]
    [InlineData("kill-process", "critical")]
    [InlineData("bulk_deletion", "critical")]
    [InlineData("write_file", "high")]
    [InlineData("execute_sql", "high")]
    [InlineData("run", "high")]
    [InlineData("shell", "high")]
    [InlineData("evalPython", "high")]
    [InlineData("create_issue", "high")]
    [InlineData("update_record", "medium")]
    [InlineData("modify-config", "medium")]
    [InlineData("set_flag", "medium")]
    [InlineData("put_object", "medium")]
    [InlineData("post_message", "medium")]
    [InlineData("read_file", "low")]
    [InlineData("get-sum", "low")]
    [InlineData("listUsers", "low")]
    [InlineData("search", "low")]
    [InlineData("query_db", "low")]
    [InlineData("HTTPFetch", "low")]
    [InlineData("echo", "medium")]
    [InlineData("translate", "medium")]
    [InlineData("get_or_delete", "critical")]
    [InlineData("list_then_run", "high")]
    public void The_name_decides_the_risk_and_the_highest_keyword_wins(string name, string expected) =>
        Assert.Equal(expected, ToolRisk.Classify(name, null).Level);

    [Fact]
    public void Annotations_only_raise_the_risk()
    {
        Assert.Equal(ToolRisk.High, ToolRisk.Classify("get_config", new ToolAnnotations { DestructiveHint = true }).Level);
        Assert.Equal(ToolRisk.Critical, ToolRisk.Classify("delete_all", new ToolAnnotations { DestructiveHint = true }).Level);
        Assert.Equal(ToolRisk.Medium, ToolRisk.Classify("read_file", new ToolAnnotations { ReadOnlyHint = false }).Level);
        Assert.Equal(ToolRisk.Critical, ToolRisk.Classify("delete_all", new ToolAnnotations { ReadOnlyHint = true }).Level);
        Assert.Equal(ToolRisk.Medium, ToolRisk.Classify("echo", new ToolAnnotations { ReadOnlyHint = true, DestructiveHint = false }).Level);
    }

    [Fact]
    public void The_reason_names_the_word_that_decided()
    {
        var (level, reason) = ToolRisk.Classify("purge_and_deleteAll", new ToolAnnotations { DestructiveHint = true });

        Assert.Equal(ToolRisk.Critical, level);
        Assert.Contains("'delete'", reason);
    }

    [Fact]
    public void Names_split_on_separators_and_case_changes()
    {
        Assert.Equal(["get", "http", "response", "v2"], ToolRisk.Words("getHTTPResponse_v2"));
        Assert.Equal(["trigger", "long", "running", "operation"], ToolRisk.Words("trigger-long-running-operation"));
    }

    [Fact]
    public void The_definition_hash_ignores_key_order_and_whitespace_but_not_content()
    {
        Tool Tool(string description, string schema) => new()
        {
            Name = "echo",
            Description = description,
            InputSchema = JsonDocument.Parse(schema).RootElement.Clone(),
        };
        var a = McpTool.Definition.From(Tool("Echo", """{"type":"object","properties":{"m":{"type":"string"}},"required":["m"]}"""));
        var b = McpTool.Definition.From(Tool("Echo", """ { "required" : ["m"], "properties": { "m": { "type": "string" } }, "type": "object" } """));
        var c = McpTool.Definition.From(Tool("Echo!", """{"type":"object","properties":{"m":{"type":"string"}},"required":["m"]}"""));
        var d = McpTool.Definition.From(Tool("Echo", """{"type":"object","properties":{"m":{"type":"integer"}},"required":["m"]}"""));

        Assert.Equal(a.Hash, b.Hash);
        Assert.NotEqual(a.Hash, c.Hash);
        Assert.NotEqual(a.Hash, d.Hash);
        Assert.Equal(["description"], c.ChangedFrom(a.PinnedJson));
        Assert.Equal(["input_schema"], d.ChangedFrom(a.PinnedJson));
    }

    [Fact]
    public void Canonical_json_sorts_members_and_keeps_numbers_as_written()
    {
        var value = JsonDocument.Parse("""{ "b": [1, 2.50, {"y": true, "x": null}], "a": "\u00e9" }""").RootElement;

        Assert.Equal("""{"a":"\u00E9","b":[1,2.50,{"x":null,"y":true}]}""", System.Text.Encoding.UTF8.GetString(CanonicalJson.Serialize(value)));
    }
}
