using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Integrations.Benchmarks.Support;

/// <summary>
/// A process the benchmark starts and measures (the API host, a peer gateway under node): its output into a log
/// file in the results folder, its pid for <see cref="CpuMeter"/>, and its whole tree killed on dispose.
/// </summary>
public sealed class ChildProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StreamWriter _log;

    private ChildProcess(Process process, StreamWriter log)
    {
        _process = process;
        _log = log;
    }

    public int Pid => _process.Id;

    public bool HasExited => _process.HasExited;

    public int ExitCode => _process.ExitCode;

    public static ChildProcess Start(ProcessStartInfo info, string logPath)
    {
        info.UseShellExecute = false;
        info.RedirectStandardOutput = true;
        info.RedirectStandardError = true;
        Directory.CreateDirectory(Path.GetDirectoryName(logPath)!);
        var log = new StreamWriter(logPath) { AutoFlush = true };
        var process = Process.Start(info) ?? throw new InvalidOperationException($"could not start {info.FileName}");
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.WriteLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.WriteLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return new ChildProcess(process, log);
    }

    /// <summary>Asks <paramref name="ready"/> every 50 ms (a failed request counts as not yet) until it answers true.</summary>
    public async Task WaitUntilAsync(string what, Func<Task<bool>> ready, TimeSpan timeout)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        while (true)
        {
            if (_process.HasExited) throw new InvalidOperationException($"{what} exited with code {_process.ExitCode} (see its log in the results folder)");
            try
            {
                if (await ready()) return;
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException)
            {
            }
            if (Stopwatch.GetTimestamp() > deadline) throw new TimeoutException($"{what} was not ready within {timeout.TotalSeconds:0} s (see its log in the results folder)");
            await Task.Delay(50);
        }
    }

    /// <summary>
    /// Asks the process to stop as a service manager would (SIGTERM) and waits up to <paramref name="grace"/> for it to
    /// exit; <see cref="DisposeAsync"/> then kills what is left. The API host, stopped so, marks its outcome-recovery
    /// row as stopped cleanly, so the next stage's host does not sweep its last stretch while it is being measured.
    /// </summary>
    public async Task StopAsync(TimeSpan grace)
    {
        if (_process.HasExited || Signal(_process.Id, 15) != 0) return;
        using var timeout = new CancellationTokenSource(grace);
        try
        {
            await _process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            // still running after the grace period: disposal kills it
        }
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Signal(int pid, int signal);

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }
        _process.Dispose();
        lock (_log) _log.Dispose();
    }

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
