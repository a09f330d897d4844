using System.Collections.Concurrent;
using System.Diagnostics;

namespace Integrations.Tests.Support;

/// <summary>
/// A script of tests/fixtures run by node as a child process until disposed: it prints <c>listening &lt;address&gt;</c>
/// once it serves, and every later line of its output goes to <c>onLine</c> (the fixture's record of what it received).
/// </summary>
public sealed class FixtureProcess : IAsyncDisposable
{
    private readonly Process _process;

    private FixtureProcess(Process process, string address)
    {
        _process = process;
        Address = address;
    }

    /// <summary>What followed <c>listening </c>: a URL or a port, as the script says it.</summary>
    public string Address { get; }

    /// <param name="package">An npm package the script imports: installed first (npm ci) when missing.</param>
    /// <param name="nodeOptions">Options for node itself, before the script.</param>
    public static async Task<FixtureProcess> StartAsync(
        string script, string package, IEnumerable<string> arguments, Action<string> onLine, IEnumerable<string>? nodeOptions = null)
    {
        await NpmFixtures.PackageAsync(package);
        var start = new ProcessStartInfo("node") { WorkingDirectory = NpmFixtures.Directory, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var option in nodeOptions ?? []) start.ArgumentList.Add(option);
        start.ArgumentList.Add(script);
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        var process = Process.Start(start) ?? throw new InvalidOperationException("node could not be started; install Node.js 20+.");
        var ready = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        var errors = new ConcurrentQueue<string>();
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            if (!ready.Task.IsCompleted && e.Data.StartsWith("listening ", StringComparison.Ordinal)) ready.TrySetResult(e.Data["listening ".Length..]);
            else onLine(e.Data);
        };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) errors.Enqueue(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (await Task.WhenAny(ready.Task, Task.Delay(TimeSpan.FromSeconds(20))) != ready.Task)
        {
            process.Kill(entireProcessTree: true);
            throw new InvalidOperationException($"{script} did not start: " + string.Join('\n', errors));
        }
        return new FixtureProcess(process, await ready.Task);
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        await _process.WaitForExitAsync();
        _process.Dispose();
    }
}
