using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;

namespace Integrations.Benchmarks.Support;

/// <summary>
/// The real API host (<c>dotnet Integrations.Api.dll --urls ...</c>, Production environment, Kestrel) as a child
/// process against the bench database: what the HTTP figures go through.
/// </summary>
public sealed class ApiProcess : IAsyncDisposable
{
    private readonly ChildProcess _process;

    private ApiProcess(ChildProcess process, Uri baseAddress, long startedTimestamp)
    {
        _process = process;
        BaseAddress = baseAddress;
        StartedTimestamp = startedTimestamp;
    }

    public Uri BaseAddress { get; }

    public int Pid => _process.Pid;

    /// <summary>Stopwatch timestamp taken just before the process was started.</summary>
    public long StartedTimestamp { get; }

    public bool HasExited => _process.HasExited;

    public const string ApiEnvironmentPrefix = "BENCH_API_ENV_";

    public static readonly string MasterKey = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));

    /// <summary>Starts the host without waiting for it (the start-up benchmark times that itself).</summary>
    public static ApiProcess Start(BenchSettings settings, string connectionString, string logName,
        IReadOnlyDictionary<string, string>? environment = null)
    {
        var port = ChildProcess.FreePort();
        var url = new Uri($"http://127.0.0.1:{port}");
        var info = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = Path.GetDirectoryName(settings.ApiDll)!,
        };
        info.ArgumentList.Add(settings.ApiDll);
        info.ArgumentList.Add("--urls");
        info.ArgumentList.Add(url.ToString().TrimEnd('/'));
        info.Environment["ConnectionStrings__Integrations"] = connectionString;
        info.Environment["Integrations__Vault__MasterKey"] = MasterKey;
        info.Environment["Integrations__Audit__AnchorFile"] = Path.Combine(Path.GetTempPath(), $"integrations-bench-anchors-{port}.jsonl");
        info.Environment["ASPNETCORE_ENVIRONMENT"] = "Production";
        info.Environment["DOTNET_ENVIRONMENT"] = "Production";
        info.Environment.Remove("OTEL_EXPORTER_OTLP_ENDPOINT");
        foreach (var (name, value) in environment ?? new Dictionary<string, string>()) info.Environment[name] = value;
        // BENCH_API_ENV_<NAME>=<value> sets <NAME> for the API host only (e.g. a runtime knob, to compare it in one run).
        foreach (var name in Environment.GetEnvironmentVariables().Keys.Cast<string>().Where(n => n.StartsWith(ApiEnvironmentPrefix, StringComparison.Ordinal)))
        {
            info.Environment[name[ApiEnvironmentPrefix.Length..]] = Environment.GetEnvironmentVariable(name);
        }

        var started = Stopwatch.GetTimestamp();
        var process = ChildProcess.Start(info, Path.Combine(settings.OutputDirectory, logName + ".log"));
        return new ApiProcess(process, url, started);
    }

    public static async Task<ApiProcess> StartReadyAsync(BenchSettings settings, string connectionString, string logName,
        IReadOnlyDictionary<string, string>? environment = null)
    {
        var api = Start(settings, connectionString, logName, environment);
        using var client = new HttpClient { BaseAddress = api.BaseAddress, Timeout = TimeSpan.FromSeconds(5) };
        await api.WaitUntilServedAsync(client, "/health/ready", TimeSpan.FromSeconds(90));
        return api;
    }

    /// <summary>Polls <paramref name="path"/> until it answers 200; returns when it did.</summary>
    public async Task WaitUntilServedAsync(HttpClient client, string path, TimeSpan timeout)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        while (true)
        {
            if (_process.HasExited) throw new InvalidOperationException($"the API host exited with code {_process.ExitCode} (see its log in the results folder)");
            try
            {
                using var response = await client.GetAsync(path);
                if (response.StatusCode == HttpStatusCode.OK) return;
            }
            catch (HttpRequestException)
            {
            }
            catch (TaskCanceledException)
            {
            }
            if (Stopwatch.GetTimestamp() > deadline) throw new TimeoutException($"the API host did not answer {path} within {timeout.TotalSeconds:0} s");
            await Task.Delay(5);
        }
    }

    public (long Rss, long Peak) Memory() => ProcessMemory.Read(_process.Pid);

    public async ValueTask DisposeAsync()
    {
        await _process.StopAsync(TimeSpan.FromSeconds(15));
        await _process.DisposeAsync();
    }
}
