using System.Text.Json;
using System.Text.RegularExpressions;
using Integrations.Tests.Support;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Xunit.Abstractions;

namespace Integrations.Tests.Http;

/// <summary>
/// The served OpenAPI document through the tools a client uses, pinned in tests/fixtures/package-lock.json: the
/// Redocly linter (recommended rules), and a TypeScript client (openapi-typescript types, openapi-fetch, tsc --strict)
/// that must compile and run against the real API with the right shapes and must not compile with wrong ones.
/// </summary>
[Collection(EverythingServerCollection.Name)]
public sealed class OpenApiClientTests(ApiFixture fixture, EverythingServer everything, ITestOutputHelper output) : IClassFixture<ApiFixture>
{
    private static readonly TimeSpan ToolTimeout = TimeSpan.FromMinutes(2);

    private static readonly Dictionary<string, string> QuietNode = new()
    {
        ["REDOCLY_TELEMETRY"] = "off",
        ["REDOCLY_SUPPRESS_UPDATE_NOTICE"] = "true",
        ["NO_COLOR"] = "1",
    };

    [Fact]
    public async Task The_served_document_has_no_errors_under_redocly_recommended_rules()
    {
        using var work = await WorkDirectory.WithDocumentAsync(fixture.Factory.CreateClient());
        var redocly = await NpmFixtures.ToolAsync("redocly");

        // No redocly.yaml in the directory or above it: the built-in "recommended" ruleset applies.
        var lint = await NpmFixtures.RunAsync(redocly, ["lint", "openapi.json", "--format=json"], work.Path, ToolTimeout, QuietNode);
        var report = JsonDocument.Parse(lint.Stdout).RootElement;
        var problems = report.GetProperty("problems").EnumerateArray()
            .Select(p => $"{p.GetProperty("severity").GetString()} {p.GetProperty("ruleId").GetString()}: {p.GetProperty("message").GetString()}")
            .ToList();
        problems.ForEach(output.WriteLine);

        Assert.Equal("2.77.0", report.GetProperty("version").GetString());
        Assert.True(report.GetProperty("totals").GetProperty("errors").GetInt32() == 0, string.Join('\n', problems.Where(p => p.StartsWith("error", StringComparison.Ordinal))));
    }

    [Fact]
    public async Task A_typescript_client_generated_from_the_document_compiles_and_registers_lists_invokes_and_creates_against_the_api()
    {
        await using var api = await ApiFactory.StartAsync();
        api.UseKestrel(0);
        api.StartServer();
        var address = api.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        var key = await api.KeyForAsync(TestEnvironment.NewTenant());

        using var work = await WorkDirectory.WithClientAsync(api.CreateClient());
        var compiled = await NpmFixtures.RunAsync(await NpmFixtures.ToolAsync("tsc"), ["-p", "tsconfig.json"], work.Path, ToolTimeout);
        Assert.True(compiled.ExitCode == 0, compiled.Output);

        var run = await NpmFixtures.RunAsync("node", ["out/client.js"], work.Path, ToolTimeout, new Dictionary<string, string>
        {
            ["BASE_URL"] = address,
            ["API_KEY"] = key.Key,
            ["MCP_URL"] = everything.Endpoint.ToString(),
        });
        output.WriteLine(run.Output);
        Assert.True(run.ExitCode == 0, run.Output);
        var result = JsonDocument.Parse(run.Stdout).RootElement;
        Assert.Equal("completed", result.GetProperty("outcome").GetString());
        Assert.Contains("hello from typescript", result.GetProperty("content").GetRawText(), StringComparison.Ordinal);
        Assert.Equal("created", result.GetProperty("integration").GetString());
    }

    [Fact]
    public async Task A_typescript_client_with_wrong_shapes_does_not_compile_on_exactly_the_wrong_lines()
    {
        using var work = await WorkDirectory.WithClientAsync(fixture.Factory.CreateClient());
        var compiled = await NpmFixtures.RunAsync(await NpmFixtures.ToolAsync("tsc"), ["-p", "tsconfig.wrong.json"], work.Path, ToolTimeout);
        output.WriteLine(compiled.Output);

        var wrongLines = File.ReadAllLines(Path.Combine(work.Path, "client-wrong.ts"))
            .Select((line, index) => (line, number: index + 1))
            .Where(l => l.line.Contains("// WRONG", StringComparison.Ordinal))
            .Select(l => l.number)
            .ToList();
        var reported = Regex.Matches(compiled.Output, @"client-wrong\.ts\((\d+),\d+\): error").Select(m => int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture))
            .Distinct().Order().ToList();
        Assert.NotEqual(0, compiled.ExitCode);
        Assert.Equal(6, wrongLines.Count);
        Assert.Equal(wrongLines, reported);
    }

    /// <summary>
    /// A directory under tests/fixtures (so that node and tsc find its node_modules) holding the served document,
    /// the generated <c>api.d.ts</c> and copies of tests/fixtures/openapi-client; deleted afterwards.
    /// </summary>
    private sealed class WorkDirectory : IDisposable
    {
        private WorkDirectory(string path) => Path = path;

        public string Path { get; }

        public static async Task<WorkDirectory> WithDocumentAsync(HttpClient client)
        {
            var work = new WorkDirectory(Directory.CreateDirectory(System.IO.Path.Combine(NpmFixtures.Directory, ".openapi-client-work", Guid.NewGuid().ToString("N"))).FullName);
            await File.WriteAllTextAsync(System.IO.Path.Combine(work.Path, "openapi.json"), await client.GetStringAsync("/openapi/v1.json"));
            return work;
        }

        public static async Task<WorkDirectory> WithClientAsync(HttpClient client)
        {
            var work = await WithDocumentAsync(client);
            foreach (var source in Directory.GetFiles(System.IO.Path.Combine(NpmFixtures.Directory, "openapi-client")))
            {
                File.Copy(source, System.IO.Path.Combine(work.Path, System.IO.Path.GetFileName(source)));
            }
            var generator = await NpmFixtures.ToolAsync("openapi-typescript");
            var generated = await NpmFixtures.RunAsync(generator, ["openapi.json", "-o", "api.d.ts"], work.Path, ToolTimeout, QuietNode);
            Assert.True(generated.ExitCode == 0, generated.Output);
            return work;
        }

        public void Dispose() => Directory.Delete(Path, recursive: true);
    }
}
