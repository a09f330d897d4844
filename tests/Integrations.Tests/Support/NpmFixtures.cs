using System.Diagnostics;

namespace Integrations.Tests.Support;

/// <summary>
/// The npm packages pinned in tests/fixtures/package-lock.json (the reference MCP server, the OpenAPI linter, the
/// TypeScript client generator and compiler): where they are, <c>npm ci</c> when one is missing, and running one.
/// </summary>
public static class NpmFixtures
{
    private static readonly SemaphoreSlim InstallLock = new(1, 1);

    public static string Directory { get; } = Find();

    /// <summary>The path of <c>node_modules/.bin/<paramref name="tool"/></c>, installing the fixtures first when it is missing.</summary>
    public static Task<string> ToolAsync(string tool) => InstalledAsync(Path.Combine(Directory, "node_modules", ".bin", tool));

    /// <summary>The directory of an installed package (a script's import), installing the fixtures first when it is missing.</summary>
    public static async Task<string> PackageAsync(string package) =>
        Path.GetDirectoryName(await InstalledAsync(Path.Combine(Directory, "node_modules", package, "package.json")))!;

    private static async Task<string> InstalledAsync(string file)
    {
        await InstallLock.WaitAsync();
        try
        {
            if (File.Exists(file)) return file;
            var npm = await RunAsync("npm", ["ci", "--no-audit", "--no-fund", "--prefix", Directory], Directory, TimeSpan.FromMinutes(5));
            if (npm.ExitCode != 0 || !File.Exists(file))
            {
                throw new InvalidOperationException($"npm ci --prefix {Directory} failed ({npm.ExitCode}) or installed no {file}:\n{npm.Output}");
            }
            return file;
        }
        finally
        {
            InstallLock.Release();
        }
    }

    /// <summary>Runs a program to its end.</summary>
    public static async Task<ProgramRun> RunAsync(
        string program, IEnumerable<string> arguments, string workingDirectory, TimeSpan timeout, IReadOnlyDictionary<string, string>? environment = null)
    {
        var start = new ProcessStartInfo(program, arguments)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory,
        };
        foreach (var (name, value) in environment ?? new Dictionary<string, string>()) start.Environment[name] = value;
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"{program} could not be started; install Node.js 20+.");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        try
        {
            await process.WaitForExitAsync().WaitAsync(timeout);
        }
        catch (TimeoutException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{program} {string.Join(' ', arguments)} did not finish in {timeout}.");
        }
        return new ProgramRun(process.ExitCode, await stdout, await stderr);
    }

    private static string Find()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "tests", "fixtures");
            if (File.Exists(Path.Combine(candidate, "package-lock.json"))) return candidate;
        }
        throw new InvalidOperationException("tests/fixtures/package-lock.json not found above " + AppContext.BaseDirectory);
    }
}

/// <summary>How a program ended and what it wrote.</summary>
public sealed record ProgramRun(int ExitCode, string Stdout, string Stderr)
{
    public string Output => Stdout + Stderr;
}
