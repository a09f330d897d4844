using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Integrations.Common;
using Integrations.Features.Credentials;
using Integrations.Features.Evidence;
using Integrations.Features.McpServers;
using Integrations.Infrastructure.Database;
using Integrations.Pipeline.Governance;
using Integrations.Tests.Support;
using Microsoft.Extensions.DependencyInjection;
using ModelContextProtocol.Protocol;

namespace Integrations.Tests.Governance;

/// <summary>
/// Evidence (issue 19 item 4): a server's policy keeps each tool call's output, redacted by paths, patterns and the call's
/// own credential, cut at its size, tied to the invocation by its output hash, readable only with scope admin, dropped
/// after its retention; a tool can turn its server's policy on or off. Through the real pipeline and a C# MCP server.
/// </summary>
public sealed class EvidenceTests(ServiceFixture fixture) : IClassFixture<ServiceFixture>, IAsyncLifetime
{
    private const string Token = "server-token-7f3a9c1e";
    private ServiceHost Host => fixture.Host;
    private TestMcpServer _mcp = null!;

    public async Task InitializeAsync()
    {
        _mcp = new TestMcpServer { RequiredBearerToken = Token };
        _mcp.SetTool(new TestTool("customer", "Reads a customer", TestTool.Schema("""{"type":"object","properties":{}}"""),
            (_, _) => ValueTask.FromResult(new CallToolResult
            {
                Content = [new TextContentBlock { Text = "Customer alice@example.com, key sk-abcdefghijklmnopqrstuvwx, plan gold" }],
                StructuredContent = JsonDocument.Parse("""{"customer":{"name":"Alice","phone":"555-0100"},"password":"hunter22","plan":"gold"}""").RootElement.Clone(),
            })));
        await _mcp.StartAsync();
    }

    public async Task DisposeAsync() => await _mcp.DisposeAsync();

    private async Task<(Guid Server, Dictionary<string, McpTool.Response> Tools)> RegisterAsync(string tenant)
    {
        var credential = await Host.SendAsync(new StoreCredential.Command($"mcp-{Guid.NewGuid():N}", "bearer_token", Secret: Token), tenant);
        var registered = await Host.SendAsync(new RegisterMcpServer.Command("crm", _mcp.Endpoint.ToString(), credential.Value.Reference), tenant);
        Assert.True(registered.IsSuccess, registered.Error?.Detail);
        foreach (var tool in registered.Value.Tools.Where(t => !t.Enabled))
        {
            await Host.SendAsync(new UpdateMcpTool.Command(registered.Value.Server.Id, tool.Id, new UpdateMcpTool.Body(Enabled: true)), tenant);
        }
        return (registered.Value.Server.Id, registered.Value.Tools.ToDictionary(t => t.Name));
    }

    private async Task<Guid> CallAsync(string tenant, Guid server, McpTool.Response tool, string args = "{}")
    {
        var result = await Host.SendAsync(new InvokeMcpTool.Command(server, tool.Id, JsonDocument.Parse(args).RootElement.Clone()), tenant);
        Assert.True(result.IsSuccess, result.Error?.Detail);
        return result.Value.InvocationId;
    }

    private Task<Result<TargetEvidencePolicy>> SetPolicyAsync(string tenant, Guid server, EvidencePolicy policy) =>
        Host.SendAsync(new UpdateEvidencePolicy.Command(EvidenceTarget.McpServers, server, policy), tenant);

    private static string Sha256(string text) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)));

    [Fact]
    public async Task A_servers_policy_keeps_each_calls_output_redacted_and_tied_to_its_invocation()
    {
        var tenant = TestEnvironment.NewTenant();
        var (server, tools) = await RegisterAsync(tenant);
        var set = await SetPolicyAsync(tenant, server, new EvidencePolicy(true, RedactPaths: ["$.structuredContent.customer.phone"]));
        Assert.True(set.IsSuccess, set.Error?.Detail);
        Assert.Equal([EvidenceRedactor.Email, EvidenceRedactor.Secret], set.Value.Policy.RedactPatterns);

        var customer = await CallAsync(tenant, server, tools["customer"]);
        var echoed = await CallAsync(tenant, server, tools["echo"], $$"""{"message":"the token is {{Token}}"}""");

        var invocation = await Host.SendAsync(new GetInvocation.Query(customer), tenant, Scopes.Admin);
        var evidence = invocation.Value.Evidence!;
        Assert.Equal(invocation.Value.Invocation.OutputHash, evidence.OutputHash);
        Assert.Equal((customer, "mcp_tool", tools["customer"].Id.ToString()), (evidence.CallId, evidence.SubjectType, evidence.SubjectId));
        Assert.Equal(Sha256(evidence.Content), evidence.ContentHash);
        Assert.False(evidence.Truncated);
        foreach (var secret in new[] { "alice@example.com", "sk-abcdefghijklmnopqrstuvwx", "555-0100", "hunter22" })
        {
            Assert.DoesNotContain(secret, evidence.Content);
        }
        // The e-mail, the key, the path and the property named like a secret: four values taken out, the rest kept.
        Assert.Equal(4, evidence.Redactions);
        var kept = JsonNode.Parse(evidence.Content)!;
        Assert.Equal("Alice", (string?)kept["structuredContent"]!["customer"]!["name"]);
        Assert.Equal("Customer [redacted], key [redacted], plan gold", (string?)kept["content"]![0]!["text"]);
        Assert.InRange(evidence.ExpiresAt - evidence.CreatedAt, TimeSpan.FromDays(30) - TimeSpan.FromMinutes(1), TimeSpan.FromDays(30) + TimeSpan.FromMinutes(1));

        // The server's own credential never stays in evidence, whatever the patterns.
        var echo = (await Host.SendAsync(new GetEvidence.Query(echoed), tenant, Scopes.Admin)).Value;
        Assert.DoesNotContain(Token, echo.Content);
        Assert.Contains("the token is [redacted]", echo.Content);

        // Only admin reads it; another tenant does not find it at all.
        var reader = await Host.SendAsync(new GetInvocation.Query(customer), tenant, Scopes.Read);
        Assert.True(reader.IsSuccess);
        Assert.Null(reader.Value.Evidence);
        Assert.Equal("forbidden", (await Host.SendAsync(new GetEvidence.Query(customer), tenant, Scopes.Read, Scopes.Invoke, Scopes.Write)).Error?.Code);
        Assert.Equal("not_found", (await Host.SendAsync(new GetEvidence.Query(customer), TestEnvironment.NewTenant(), Scopes.Admin)).Error?.Code);
    }

    [Fact]
    public async Task Nothing_is_kept_without_a_policy_and_a_tool_turns_its_servers_policy_on_or_off()
    {
        var tenant = TestEnvironment.NewTenant();
        var (server, tools) = await RegisterAsync(tenant);
        var echo = tools["echo"];

        var unset = await CallAsync(tenant, server, echo, """{"message":"a"}""");
        Assert.Equal("not_found", (await Host.SendAsync(new GetEvidence.Query(unset), tenant)).Error?.Code);
        Assert.False((await Host.SendAsync(new GetEvidencePolicy.Query(EvidenceTarget.McpServers, server), tenant)).Value.Policy.Enabled);

        var on = await Host.SendAsync(new UpdateMcpTool.Command(server, echo.Id, new UpdateMcpTool.Body(Evidence: "on")), tenant);
        Assert.Equal("on", on.Value.Evidence);
        var toolOn = await CallAsync(tenant, server, echo, """{"message":"b"}""");
        Assert.True((await Host.SendAsync(new GetEvidence.Query(toolOn), tenant)).IsSuccess);

        await SetPolicyAsync(tenant, server, new EvidencePolicy(true));
        await Host.SendAsync(new UpdateMcpTool.Command(server, echo.Id, new UpdateMcpTool.Body(Evidence: "off")), tenant);
        var toolOff = await CallAsync(tenant, server, echo, """{"message":"c"}""");
        Assert.Equal("not_found", (await Host.SendAsync(new GetEvidence.Query(toolOff), tenant)).Error?.Code);

        var inherit = await Host.SendAsync(new UpdateMcpTool.Command(server, echo.Id, new UpdateMcpTool.Body(Evidence: "inherit")), tenant);
        Assert.Equal("inherit", inherit.Value.Evidence);
        var inherited = await CallAsync(tenant, server, echo, """{"message":"d"}""");
        Assert.True((await Host.SendAsync(new GetEvidence.Query(inherited), tenant)).IsSuccess);

        await SetPolicyAsync(tenant, server, new EvidencePolicy(false));
        var serverOff = await CallAsync(tenant, server, echo, """{"message":"e"}""");
        Assert.Equal("not_found", (await Host.SendAsync(new GetEvidence.Query(serverOff), tenant)).Error?.Code);
    }

    [Fact]
    public async Task Output_over_the_cap_is_cut_on_a_whole_character_and_marked_truncated()
    {
        var tenant = TestEnvironment.NewTenant();
        var (server, tools) = await RegisterAsync(tenant);
        await SetPolicyAsync(tenant, server, new EvidencePolicy(true, MaxBytes: 101, RetentionDays: 2));

        var call = await CallAsync(tenant, server, tools["echo"], $$"""{"message":"{{new string('é', 300)}}"}""");

        var evidence = (await Host.SendAsync(new GetEvidence.Query(call), tenant)).Value;
        Assert.True(evidence.Truncated);
        Assert.InRange(Encoding.UTF8.GetByteCount(evidence.Content), 99, 101);
        Assert.DoesNotContain('\uFFFD', evidence.Content);
        Assert.True(evidence.OriginalBytes > 600);
        Assert.Equal(Sha256(evidence.Content), evidence.ContentHash);
    }

    [Fact]
    public async Task Expired_evidence_is_dropped_by_the_pruning_job_and_kept_evidence_is_never_changed()
    {
        var tenant = TestEnvironment.NewTenant();
        var (server, tools) = await RegisterAsync(tenant);
        await SetPolicyAsync(tenant, server, new EvidencePolicy(true, RetentionDays: 1));
        var kept = await CallAsync(tenant, server, tools["echo"], """{"message":"keep"}""");
        var expired = Guid.NewGuid();
        await OwnerSql.ExecuteAsync(Host.ConnectionString, """
            INSERT INTO call_evidence (tenant_id, call_id, subject_type, subject_id, output_hash, content, content_hash, original_bytes,
                redactions, truncated, created_at, expires_at)
            VALUES (@Tenant, @Id, 'mcp_tool', 'x', 'h', '{}', 'h', 2, 0, false, now() - interval '2 days', now() - interval '1 day')
            """, new { Tenant = tenant, Id = expired });

        var refused = await Assert.ThrowsAsync<Npgsql.PostgresException>(() => OwnerSql.ExecuteAsync(Host.ConnectionString,
            "UPDATE call_evidence SET content = 'forged' WHERE tenant_id = @Tenant AND call_id = @Id", new { Tenant = tenant, Id = kept }));
        Assert.Equal("42501", refused.SqlState);

        var dropped = (await Host.Services.GetRequiredService<ExpiredRowsPruning>().PruneOnceAsync(CancellationToken.None)).Evidence;

        Assert.True(dropped >= 1);
        Assert.Equal(0L, await OwnerSql.ScalarAsync<long>(Host.ConnectionString,
            "SELECT count(*) FROM call_evidence WHERE tenant_id = @Tenant AND call_id = @Id", new { Tenant = tenant, Id = expired }));
        Assert.True((await Host.SendAsync(new GetEvidence.Query(kept), tenant)).IsSuccess);
    }

    [Fact]
    public async Task A_bad_policy_is_refused_field_by_field_and_only_admin_sets_one()
    {
        var tenant = TestEnvironment.NewTenant();
        var (server, _) = await RegisterAsync(tenant);

        var bad = await SetPolicyAsync(tenant, server, new EvidencePolicy(true, ["customer.phone", "$.a[", "$..ok"], ["regex:(unclosed", "phone", "regex:\\d{3}"], 0, 0));

        Assert.Equal("validation_failed", bad.Error?.Code);
        Assert.Equal(["max_bytes", "redact_paths[0]", "redact_paths[1]", "redact_patterns[0]", "redact_patterns[1]", "retention_days"],
            bad.Error!.FieldErrors!.Keys.Order());
        Assert.Equal("validation_failed", (await Host.SendAsync(new UpdateEvidencePolicy.Command("widgets", server, new EvidencePolicy(true)), tenant)).Error?.Code);
        Assert.Equal("not_found", (await SetPolicyAsync(tenant, Guid.NewGuid(), new EvidencePolicy(true))).Error?.Code);
        Assert.Equal("not_found", (await SetPolicyAsync(TestEnvironment.NewTenant(), server, new EvidencePolicy(true))).Error?.Code);
        Assert.Equal("forbidden", (await Host.SendAsync(new UpdateEvidencePolicy.Command(EvidenceTarget.McpServers, server, new EvidencePolicy(true)),
            tenant, Scopes.Write, Scopes.Read)).Error?.Code);
        Assert.Equal("validation_failed", (await Host.SendAsync(new UpdateMcpTool.Command(server, Guid.NewGuid(), new UpdateMcpTool.Body(Evidence: "always")), tenant)).Error?.Code);
    }

    [Fact]
    public void The_redactor_takes_paths_at_any_depth_patterns_in_every_string_and_fails_closed_on_a_runaway_expression()
    {
        var node = JsonNode.Parse("""
            {"a":{"b":[{"ssn":"1"},{"ssn":"2"}],"c":{"deep":{"ssn":"3"}}},"list":["x","y"],"note":"mail bob@example.org or call 555-0199",
             "Authorization":"Bearer abc","ghp":"ghp_abcdefghijklmnopqrstuvwxyz012345","aws":"AKIAABCDEFGHIJKLMNOP"}
            """)!;
        var policy = new EvidencePolicy(true, ["$..ssn", "$.list[1]"], [EvidenceRedactor.Email, EvidenceRedactor.Secret, @"regex:\d{3}-\d{4}"]);

        var count = EvidenceRedactor.Redact(node, policy, []);

        Assert.Equal(
            """{"a":{"b":[{"ssn":"[redacted]"},{"ssn":"[redacted]"}],"c":{"deep":{"ssn":"[redacted]"}}},"list":["x","[redacted]"],"note":"mail [redacted] or call [redacted]","Authorization":"[redacted]","ghp":"[redacted]","aws":"[redacted]"}""",
            node.ToJsonString());
        Assert.Equal(9, count);

        var runaway = JsonNode.Parse($$"""{"text":"{{new string('a', 40_000)}}!"}""")!;
        EvidenceRedactor.Redact(runaway, new EvidencePolicy(true, RedactPatterns: ["regex:^(a+)+$"]), []);
        Assert.Equal("[redacted]", (string?)runaway["text"]);
    }
}
