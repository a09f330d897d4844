using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Integrations.Tests.Support;

/// <summary>
/// The reference MCP server (<c>@modelcontextprotocol/server-everything</c>, pinned in tests/fixtures/package-lock.json),
/// started as a real process on a free loopback port with <c>PORT=&lt;port&gt; mcp-server-everything streamableHttp</c>,
/// and killed (with its children) at the end. When tests/fixtures/node_modules is missing it runs
/// <c>npm ci</c> first, so a plain <c>dotnet test</c> works.
/// </summary>
public class EverythingServer : IAsyncLifetime
{
    private readonly string _mode;
    private readonly string _readyLine;
    private readonly string _path;
    private Process? _process;
    private readonly StringBuilder _output = new();

    public EverythingServer()
        : this("streamableHttp", "listening on port", "/mcp")
    {
    }

    protected EverythingServer(string mode, string readyLine, string path)
    {
        _mode = mode;
        _readyLine = readyLine;
        _path = path;
    }

    public Uri Endpoint { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        var executable = await NpmFixtures.ToolAsync("mcp-server-everything");

        for (var attempt = 1; ; attempt++)
        {
            var port = FreePort();
            if (await TryStartAsync(executable, port)) break;
            if (attempt == 3) throw new InvalidOperationException($"server-everything did not start:\n{Output}");
        }
    }

    private string Output
    {
        get
        {
            lock (_output) return _output.ToString();
        }
    }

    private async Task<bool> TryStartAsync(string executable, int port)
    {
        var start = new ProcessStartInfo(executable, _mode)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        // A clean environment: the server has a tool that returns its whole environment.
        start.Environment.Clear();
        start.Environment["PATH"] = Environment.GetEnvironmentVariable("PATH") ?? "/usr/local/bin:/usr/bin:/bin";
        start.Environment["PORT"] = port.ToString();

        var ready = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        var process = new Process { StartInfo = start, EnableRaisingEvents = true };
        process.OutputDataReceived += (_, e) => Append(e.Data);
        process.ErrorDataReceived += (_, e) =>
        {
            Append(e.Data);
            if (e.Data?.Contains(_readyLine, StringComparison.OrdinalIgnoreCase) == true) ready.TrySetResult(true);
        };
        process.Exited += (_, _) => ready.TrySetResult(false);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        var started = await ready.Task.WaitAsync(TimeSpan.FromSeconds(30));
        if (!started)
        {
            process.Dispose();
            return false;
        }
        _process = process;
        Endpoint = new Uri($"http://127.0.0.1:{port}{_path}");
        return true;
    }

    private void Append(string? line)
    {
        if (line is null) return;
        lock (_output) _output.AppendLine(line);
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public Task DisposeAsync()
    {
        if (_process is { } process)
        {
            try
            {
                if (!process.HasExited)
                {
                    process.Kill(entireProcessTree: true);
                    process.WaitForExit(5000);
                }
            }
            catch (InvalidOperationException)
            {
                // Already gone.
            }
            process.Dispose();
        }
        return Task.CompletedTask;
    }
}

/// <summary>The same reference server speaking only the legacy HTTP+SSE transport (GET /sse, POST /message).</summary>
public sealed class EverythingSseServer() : EverythingServer("sse", "Server is running on port", "/sse");

[CollectionDefinition(Name)]
public sealed class EverythingServerCollection : ICollectionFixture<EverythingServer>
{
    public const string Name = "server-everything";
}
