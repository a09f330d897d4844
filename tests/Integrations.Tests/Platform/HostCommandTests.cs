using Integrations.Api;
using Integrations.Tests.Support;

namespace Integrations.Tests.Platform;

/// <summary>The host's commands as an operator types them. Console output is shared, so these run one at a time.</summary>
[Collection(nameof(HostCommandTests))]
public sealed class HostCommandTests
{
    private static async Task<(int Code, string Output)> RunAsync(params string[] args)
    {
        var original = Console.Out;
        await using var output = new StringWriter();
        Console.SetOut(output);
        try
        {
            return (await HostCommands.RunAsync(args), output.ToString());
        }
        finally
        {
            Console.SetOut(original);
        }
    }

    [Theory]
    [InlineData("--help")]
    [InlineData("-h")]
    [InlineData("help")]
    public async Task Help_lists_every_command_and_starts_nothing(string flag)
    {
        Assert.True(HostCommands.IsCommand(flag));
        var (code, output) = await RunAsync(flag);
        Assert.Equal(0, code);
        foreach (var command in new[] { "migrate", "create-api-key", "revoke-api-key", "check-api-key", "rotate-master-key" })
        {
            Assert.Contains(command, output);
        }
    }

    [Fact]
    public async Task A_commands_help_explains_it_without_needing_a_database()
    {
        var (code, output) = await RunAsync("create-api-key", "--help");
        Assert.Equal(0, code);
        Assert.Contains("--tenant T [--scopes a,b] [--name N]", output);
    }

    [Fact]
    public async Task Migrate_says_how_many_it_applied_then_that_none_were_left()
    {
        var database = await TestEnvironment.CreateDatabaseAsync("cli");
        var first = await RunAsync("migrate", $"--ConnectionStrings:IntegrationsOwner={database}", $"--ConnectionStrings:Integrations={database}",
            $"--Integrations:Vault:MasterKey={TestEnvironment.MasterKey}");
        var second = await RunAsync("migrate", $"--ConnectionStrings:IntegrationsOwner={database}", $"--ConnectionStrings:Integrations={database}",
            $"--Integrations:Vault:MasterKey={TestEnvironment.MasterKey}");

        Assert.Equal(0, first.Code);
        Assert.Matches(@"Applied \d+ migration\(s\)", first.Output);
        Assert.Equal((0, true), (second.Code, second.Output.Contains("none applied")));
    }
}
