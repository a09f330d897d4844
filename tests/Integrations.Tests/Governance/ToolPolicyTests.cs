using Integrations.Common;
using Integrations.Features.Policies;
using Integrations.Infrastructure.Database;
using Integrations.Tests.Support;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Tests.Governance;

public sealed class ToolPolicyTests(ServiceFixture fixture) : IClassFixture<ServiceFixture>
{
    private ServiceHost Host => fixture.Host;
    private static readonly Guid ServerId = Guid.NewGuid();

    [Theory]
    [InlineData("low", true)]
    [InlineData("medium", true)]
    [InlineData("high", false)]
    [InlineData("critical", false)]
    public void The_default_ceiling_is_medium(string risk, bool allowed) =>
        Assert.Equal(allowed, ToolPolicy.Default.Evaluate("files", ServerId, "tool", risk).Allowed);

    [Fact]
    public void An_allow_list_entry_lets_a_tool_above_the_ceiling_through_but_the_deny_list_wins()
    {
        var policy = ToolPolicy.Default with { AllowList = ["files/write_*"], DenyList = ["*/write_secrets"] };

        Assert.True(policy.Evaluate("files", ServerId, "write_file", "high").Allowed);
        Assert.Equal("risk_ceiling", policy.Evaluate("other", ServerId, "write_file", "high").Rule);
        Assert.Equal("deny_list", policy.Evaluate("files", ServerId, "write_secrets", "low").Rule);
    }

    [Theory]
    [InlineData("echo", "any", "echo", true)]
    [InlineData("echo", "any", "echo2", false)]
    [InlineData("get-*", "any", "get-sum", true)]
    [InlineData("everything/echo", "everything", "echo", true)]
    [InlineData("everything/echo", "other", "echo", false)]
    [InlineData("*/delete_*", "db", "delete_row", true)]
    [InlineData("*", "db", "anything", true)]
    [InlineData("e*o", "x", "echo", true)]
    [InlineData("e*o", "x", "echos", false)]
    public void Patterns_match_tool_names_and_server_slash_tool(string pattern, string server, string tool, bool matches) =>
        Assert.Equal(matches, ToolPolicy.Matches(pattern, server, ServerId, tool));

    [Fact]
    public void A_server_can_be_named_by_its_id() =>
        Assert.True(ToolPolicy.Matches($"{ServerId}/echo", "everything", ServerId, "echo"));

    [Fact]
    public async Task A_tenant_without_a_policy_gets_the_defaults()
    {
        var policy = (await Host.SendAsync(new GetToolPolicy.Query(), TestEnvironment.NewTenant())).Value;
        Assert.Equal(ToolPolicy.Default, policy);
    }

    [Fact]
    public async Task Update_replaces_the_policy_is_audited_and_reads_back()
    {
        var tenant = TestEnvironment.NewTenant();

        var updated = await Host.SendAsync(new UpdateToolPolicy.Command("high", ["files/*"], ["shell"], 30, 600), tenant);

        Assert.True(updated.IsSuccess, updated.Error?.Detail);
        var read = (await Host.SendAsync(new GetToolPolicy.Query(), tenant)).Value;
        Assert.Equal(("high", 30, 600), (read.RiskCeiling, read.DefaultRateLimitPerMinute, read.TenantRateLimitPerMinute));
        Assert.Equal(["files/*"], read.AllowList);
        Assert.Equal(["shell"], read.DenyList);
        Assert.Equal(1, await OwnerSql.AuditCountAsync(Host.ConnectionString, tenant, "policies.update"));
    }

    [Fact]
    public async Task Update_needs_admin_and_valid_values()
    {
        var tenant = TestEnvironment.NewTenant();
        Assert.Equal("forbidden", (await Host.SendAsync(new UpdateToolPolicy.Command(), tenant, Scopes.Write)).Error?.Code);

        var invalid = await Host.SendAsync(new UpdateToolPolicy.Command("extreme", ["a/b/c"], [""], 0, -1), tenant);
        Assert.Equal(["allow_list", "default_rate_limit_per_minute", "deny_list", "risk_ceiling", "tenant_rate_limit_per_minute"],
            invalid.Error!.FieldErrors!.Keys.Order());
    }

    [Fact]
    public async Task A_change_through_one_replica_reaches_the_cache_of_another()
    {
        await using var other = await ServiceHost.StartAsync();
        var tenant = TestEnvironment.NewTenant();
        var store = other.Services.GetRequiredService<ToolPolicyStore>();
        var notifications = other.Services.GetRequiredService<ChangeNotifications>();
        await WaitUntil(() => notifications.IsListening);

        Assert.Equal("medium", (await other.SendAsync(new GetToolPolicy.Query(), tenant)).Value.RiskCeiling); // cached now
        await Host.SendAsync(new UpdateToolPolicy.Command("critical"), tenant);

        await WaitUntil(async () => (await other.SendAsync(new GetToolPolicy.Query(), tenant)).Value.RiskCeiling == "critical");
        Assert.NotNull(store);
    }

    private static async Task WaitUntil(Func<bool> condition) => await WaitUntil(() => Task.FromResult(condition()));

    private static async Task WaitUntil(Func<Task<bool>> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "condition not met within 5 s");
            await Task.Delay(20);
        }
    }
}
