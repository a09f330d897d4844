using System.Text.Json;
using Integrations.Common;
using Integrations.Features.McpServers;
using ModelContextProtocol.Protocol;

namespace Integrations.Tests.McpServers;

public sealed class ToolRiskTests
{
    // Tool names of public MCP servers (the reference servers: everything, filesystem, git, memory, fetch, time, sqlite,
    // puppeteer; GitHub's, Slack's, Playwright's, Stripe's, Notion's, Linear's, Kubernetes and shell servers) and names
    // that read as a risky word only as a string.
    [Theory]
    // everything
    [InlineData("echo", "low")]
    [InlineData("add", "medium")]
    [InlineData("printEnv", "low")]
    [InlineData("getTinyImage", "low")]
    [InlineData("getResourceReference", "low")]
    [InlineData("getResourceLinks", "low")]
    [InlineData("startElicitation", "medium")]
    // filesystem
    [InlineData("read_file", "low")]
    [InlineData("read_text_file", "low")]
    [InlineData("read_media_file", "low")]
    [InlineData("read_multiple_files", "low")]
    [InlineData("write_file", "high")]
    [InlineData("edit_file", "medium")]
    [InlineData("create_directory", "high")]
    [InlineData("list_directory", "low")]
    [InlineData("list_directory_with_sizes", "low")]
    [InlineData("move_file", "medium")]
    [InlineData("search_files", "low")]
    [InlineData("get_file_info", "low")]
    [InlineData("list_allowed_directories", "low")]
    // git
    [InlineData("git_status", "low")]
    [InlineData("git_diff_unstaged", "low")]
    [InlineData("git_diff_staged", "low")]
    [InlineData("git_diff", "low")]
    [InlineData("git_commit", "high")]
    [InlineData("git_add", "medium")]
    [InlineData("git_reset", "high")]
    [InlineData("git_log", "low")]
    [InlineData("git_create_branch", "high")]
    [InlineData("git_checkout", "medium")]
    [InlineData("git_show", "low")]
    [InlineData("git_init", "high")]
    // memory
    [InlineData("create_entities", "high")]
    [InlineData("create_relations", "high")]
    [InlineData("add_observations", "medium")]
    [InlineData("delete_entities", "critical")]
    [InlineData("delete_observations", "critical")]
    [InlineData("delete_relations", "critical")]
    [InlineData("read_graph", "low")]
    [InlineData("search_nodes", "low")]
    [InlineData("open_nodes", "low")]
    // fetch, time, sqlite, postgres
    [InlineData("fetch", "low")]
    [InlineData("get_current_time", "low")]
    [InlineData("convert_time", "low")]
    [InlineData("read_query", "low")]
    [InlineData("write_query", "high")]
    [InlineData("create_table", "high")]
    [InlineData("list_tables", "low")]
    [InlineData("describe_table", "low")]
    [InlineData("append_insight", "medium")]
    [InlineData("query", "low")]
    // GitHub
    [InlineData("create_or_update_file", "high")]
    [InlineData("search_repositories", "low")]
    [InlineData("create_repository", "high")]
    [InlineData("get_file_contents", "low")]
    [InlineData("push_files", "high")]
    [InlineData("create_issue", "high")]
    [InlineData("create_pull_request", "high")]
    [InlineData("fork_repository", "high")]
    [InlineData("create_branch", "high")]
    [InlineData("list_commits", "low")]
    [InlineData("list_issues", "low")]
    [InlineData("update_issue", "medium")]
    [InlineData("add_issue_comment", "medium")]
    [InlineData("search_code", "low")]
    [InlineData("get_issue", "low")]
    [InlineData("merge_pull_request", "high")]
    [InlineData("get_pull_request_files", "low")]
    [InlineData("update_pull_request_branch", "medium")]
    [InlineData("delete_file", "critical")]
    // Slack
    [InlineData("slack_list_channels", "low")]
    [InlineData("slack_post_message", "high")]
    [InlineData("slack_reply_to_thread", "high")]
    [InlineData("slack_add_reaction", "medium")]
    [InlineData("slack_get_channel_history", "low")]
    [InlineData("slack_get_thread_replies", "low")]
    [InlineData("slack_get_users", "low")]
    // Puppeteer and Playwright
    [InlineData("puppeteer_navigate", "medium")]
    [InlineData("puppeteer_screenshot", "low")]
    [InlineData("puppeteer_click", "medium")]
    [InlineData("puppeteer_fill", "medium")]
    [InlineData("puppeteer_evaluate", "high")]
    [InlineData("browser_snapshot", "low")]
    [InlineData("browser_type", "medium")]
    [InlineData("browser_file_upload", "high")]
    [InlineData("browser_install", "high")]
    [InlineData("browser_press_key", "medium")]
    [InlineData("browser_wait_for", "low")]
    [InlineData("browser_evaluate", "high")]
    // Stripe, Notion, Linear
    [InlineData("create_customer", "high")]
    [InlineData("list_customers", "low")]
    [InlineData("create_payment_link", "high")]
    [InlineData("finalize_invoice", "high")]
    [InlineData("retrieve_balance", "low")]
    [InlineData("create_refund", "high")]
    [InlineData("cancel_subscription", "high")]
    [InlineData("update_subscription", "medium")]
    [InlineData("notion_search", "low")]
    [InlineData("notion_fetch", "low")]
    [InlineData("notion_move_pages", "medium")]
    [InlineData("notion_duplicate_page", "medium")]
    [InlineData("create_comment", "high")]
    // Kubernetes, shells, outward actions and money
    [InlineData("kubectl_get", "low")]
    [InlineData("kubectl_delete", "critical")]
    [InlineData("kubectl_scale", "medium")]
    [InlineData("exec_in_pod", "high")]
    [InlineData("uninstall_helm_chart", "critical")]
    [InlineData("install_helm_chart", "high")]
    [InlineData("execute_command", "high")]
    [InlineData("run_command", "high")]
    [InlineData("shell", "high")]
    [InlineData("send_email", "high")]
    [InlineData("publish_post", "high")]
    [InlineData("deploy_service", "high")]
    [InlineData("revoke_token", "high")]
    [InlineData("transfer_funds", "critical")]
    [InlineData("pay_invoice", "critical")]
    [InlineData("purge_cache", "critical")]
    [InlineData("wipe_device", "critical")]
    [InlineData("erase_disk", "critical")]
    [InlineData("truncate_table", "critical")]
    [InlineData("DropTable", "critical")]
    [InlineData("terminate_instance", "critical")]
    [InlineData("kill-process", "critical")]
    [InlineData("removeUser", "critical")]
    [InlineData("bulk_deletion", "critical")]
    [InlineData("get_or_delete", "critical")]
    [InlineData("list_then_run", "high")]
    // a risky word only as a string, or as the object of a reading verb
    [InlineData("dropbox_search", "low")]
    [InlineData("dropbox_list_folder", "low")]
    [InlineData("runtime_status", "low")]
    [InlineData("runner_info", "low")]
    [InlineData("executor_list", "low")]
    [InlineData("settings_get", "low")]
    [InlineData("get_post", "low")]
    [InlineData("list_deleted_files", "low")]
    [InlineData("get_run_logs", "low")]
    [InlineData("search_killswitches", "low")]
    [InlineData("HTTPFetch", "low")]
    [InlineData("sendgrid_list_templates", "low")]
    [InlineData("payload_inspect", "low")]
    // no verb at all
    [InlineData("sequentialthinking", "medium")]
    [InlineData("directory_tree", "medium")]
    public void Names_are_read_as_words_and_the_action_verb_decides(string name, string expected)
    {
        var (level, reason) = ToolRisk.Classify(name, null, null);
        Assert.True(expected == level, $"{name}: {level} ({reason}), expected {expected}");
    }

    [Theory]
    [InlineData("directory_tree", "Get a recursive tree view of files and directories as a JSON structure.", "low")]
    [InlineData("sequentialthinking", "A detailed tool for dynamic and reflective problem-solving through thoughts.", "medium")]
    [InlineData("maps_directions", "Get directions between two points", "low")]
    [InlineData("cleanup", "Deletes every temporary file older than a day.", "critical")]
    [InlineData("notifier", "Sends a message to the on-call channel.", "high")]
    [InlineData("records", "Modifies the record's fields.", "medium")]
    [InlineData("get_item", "Deletes the item after reading it.", "low")]
    public void A_name_without_a_verb_is_read_from_the_descriptions_first_word(string name, string description, string expected) =>
        Assert.Equal(expected, ToolRisk.Classify(name, description, null).Level);

    [Fact]
    public void Annotations_only_raise_the_risk_except_a_read_only_tool_with_no_verb_anywhere()
    {
        Assert.Equal(ToolRisk.High, ToolRisk.Classify("get_config", null, new ToolAnnotations { DestructiveHint = true }).Level);
        Assert.Equal(ToolRisk.Critical, ToolRisk.Classify("delete_all", null, new ToolAnnotations { DestructiveHint = true }).Level);
        Assert.Equal(ToolRisk.Medium, ToolRisk.Classify("read_file", null, new ToolAnnotations { ReadOnlyHint = false }).Level);
        Assert.Equal(ToolRisk.Critical, ToolRisk.Classify("delete_all", null, new ToolAnnotations { ReadOnlyHint = true }).Level);
        Assert.Equal(ToolRisk.Medium, ToolRisk.Classify("add", null, new ToolAnnotations { ReadOnlyHint = true }).Level);
        Assert.Equal(ToolRisk.Low, ToolRisk.Classify("sequentialthinking", null, new ToolAnnotations { ReadOnlyHint = true }).Level);
        Assert.Equal(ToolRisk.High, ToolRisk.Classify("sequentialthinking", null, new ToolAnnotations { ReadOnlyHint = true, DestructiveHint = true }).Level);
    }

    [Fact]
    public void The_reason_names_the_word_that_decided()
    {
        var (level, reason) = ToolRisk.Classify("list_and_deleteAll", null, new ToolAnnotations { DestructiveHint = true });

        Assert.Equal(ToolRisk.Critical, level);
        Assert.Contains("'delete'", reason);
        Assert.Contains("'deletes'", ToolRisk.Classify("cleanup", "Deletes old files.", null).Reason);
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
