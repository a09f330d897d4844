using System.Text.RegularExpressions;
using Integrations.Common;
using Integrations.Features.Integrations;
using Integrations.Tests.Support;
using MediatR;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Npgsql;

namespace Integrations.Tests.Platform;

/// <summary>
/// The README's "Using it in-process" recipe, as written: <see cref="Recipe"/> is its code block (the test fails when
/// the two differ), run against a fresh database with only the configuration a deployment gives.
/// </summary>
public sealed partial class InProcessRecipeTests
{
    // The README's block, line for line (indentation aside), minus its using directives, which must be among this file's (or implied by its namespace).
    private static async Task Recipe(string[] args)
    {
        // recipe:begin
        var builder = Host.CreateApplicationBuilder(args);   // configuration: the table under "Configuration"
        builder.Services.AddIntegrations(builder.Configuration);
        using var host = builder.Build();
        await host.StartAsync();                              // applies pending migrations, starts the background jobs

        await using (var scope = host.Services.CreateAsyncScope())
        {
            // An in-process caller says who acts: the tenant, an actor name for the audit trail, the scopes.
            scope.ServiceProvider.GetRequiredService<CallerContext>()
                .Set(new Caller("acme", "nightly-job", new HashSet<string> { Scopes.Write }));
            var mediator = scope.ServiceProvider.GetRequiredService<IMediator>();
            var created = await mediator.Send(new CreateIntegration.Command("openai-main", "openai"));
            Console.WriteLine(created.IsSuccess ? $"created {created.Value.Id}" : $"refused: {created.Error!.Code}");
        }
        await host.StopAsync();
        // recipe:end
    }

    [Fact]
    public async Task The_recipe_runs_as_written_against_a_fresh_database()
    {
        var owner = await TestEnvironment.CreateDatabaseAsync("recipe");
        var scratch = Path.Combine(Path.GetTempPath(), "integrations-tests", Guid.NewGuid().ToString("N"));
        string[] args =
        [
            $"--ConnectionStrings:Integrations={TestEnvironment.ServiceConnectionString(owner)}",
            $"--ConnectionStrings:IntegrationsOwner={owner}",
            $"--Integrations:Vault:MasterKey={TestEnvironment.MasterKey}",
            $"--Integrations:DataDirectory={scratch}",
            $"--Integrations:Audit:AnchorFile={Path.Combine(scratch, "anchors.jsonl")}",
        ];

        await Recipe(args);

        await using var connection = new NpgsqlConnection(owner);
        await connection.OpenAsync();
        await using var read = new NpgsqlCommand(
            "SELECT (SELECT count(*) FROM cus_integrations WHERE tenant_id = 'acme' AND name = 'openai-main'), " +
            "(SELECT count(*) FROM audit_events WHERE tenant_id = 'acme' AND action = 'integrations.create' AND actor = 'nightly-job')", connection);
        await using var row = await read.ExecuteReaderAsync();
        Assert.True(await row.ReadAsync());
        Assert.Equal(1L, row.GetInt64(0));
        Assert.Equal(1L, row.GetInt64(1));
    }

    [Fact]
    public void The_readme_block_is_the_recipe_this_test_runs()
    {
        var readme = File.ReadAllText(Path.Combine(TestEnvironment.RepositoryRoot(), "README.md"));
        var section = readme.IndexOf("### Using it in-process", StringComparison.Ordinal);
        Assert.True(section >= 0, "README.md has no \"### Using it in-process\" section");
        var block = CSharpBlock().Match(readme, section);
        Assert.True(block.Success, "the section has no ```csharp block");

        var lines = block.Groups["code"].Value.Split('\n').Select(l => l.TrimEnd()).ToList();
        var source = File.ReadAllText(Path.Combine(TestEnvironment.RepositoryRoot(), "tests", "Integrations.Tests", "Platform", "InProcessRecipeTests.cs"));
        foreach (var directive in lines.Where(l => UsingDirective().IsMatch(l)))
        {
            // This file's own namespace is inside Integrations: that directive is implied here.
            if (directive == "using Integrations;") continue;
            Assert.Contains("\n" + directive + "\n", source.Replace("\r", "", StringComparison.Ordinal), StringComparison.Ordinal);
        }

        var readmeCode = Normalize(lines.Where(l => !UsingDirective().IsMatch(l)));
        var begin = source.IndexOf("// recipe:begin", StringComparison.Ordinal);
        var end = source.IndexOf("// recipe:end", StringComparison.Ordinal);
        var testedCode = Normalize(source[(source.IndexOf('\n', begin) + 1)..end].Split('\n'));
        Assert.Equal(testedCode, readmeCode);
    }

    private static string Normalize(IEnumerable<string> lines) =>
        string.Join('\n', lines.Select(l => l.Trim()).Where(l => l.Length > 0));


    [GeneratedRegex(@"^using [A-Za-z][A-Za-z0-9.]*;$")]
    private static partial Regex UsingDirective();

    [GeneratedRegex("```csharp\\n(?<code>.*?)```", RegexOptions.Singleline)]
    private static partial Regex CSharpBlock();
}
