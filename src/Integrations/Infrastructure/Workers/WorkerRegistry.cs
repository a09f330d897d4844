using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Integrations.Infrastructure.Workers;

/// <summary>
/// Every background job of this process and how its passes went: the one loop every periodic job runs
/// (<see cref="RunEveryAsync"/>), and <see cref="RunPassAsync"/> for a job with its own schedule. A pass that throws is
/// recorded (outcome <c>failed</c>, its error) and logged; the job goes on at its next run, so one bad pass never stops
/// a job or the host. The registry is this replica's: each replica runs its own jobs.
/// </summary>
public sealed class WorkerRegistry(TimeProvider time, ILogger<WorkerRegistry> logger)
{
    public const string Off = "off";
    public const string Waiting = "waiting";
    public const string Running = "running";
    public const string Succeeded = "succeeded";
    public const string Failed = "failed";

    /// <summary>Long enough for the cause, short enough for a list.</summary>
    private const int MaxErrorLength = 500;

    private readonly ConcurrentDictionary<string, Worker> _workers = new(StringComparer.Ordinal);

    /// <summary>Makes the job known before its first pass (and says it is off when its interval is zero).</summary>
    public void Declare(string name, string description, TimeSpan? interval)
    {
        var worker = _workers.GetOrAdd(name, n => new Worker(n));
        lock (worker)
        {
            worker.Description = description;
            worker.Interval = interval;
            worker.Status = interval is { } i && i <= TimeSpan.Zero ? Off : Waiting;
        }
    }

    /// <summary>
    /// Runs <paramref name="pass"/> every <paramref name="interval"/> until <paramref name="stoppingToken"/> fires (first
    /// at once when <paramref name="startAtOnce"/>, else after one interval); a zero interval declares the job off.
    /// </summary>
    public async Task RunEveryAsync(string name, string description, TimeSpan interval, Func<CancellationToken, Task<string?>> pass,
        CancellationToken stoppingToken, bool startAtOnce = false)
    {
        Declare(name, description, interval);
        if (interval <= TimeSpan.Zero) return;
        using var timer = new PeriodicTimer(interval, time);
        SetNextRun(name, startAtOnce ? time.GetUtcNow() : time.GetUtcNow() + interval);
        if (startAtOnce) await RunPassAsync(name, pass, interval, stoppingToken);
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            await RunPassAsync(name, pass, interval, stoppingToken);
        }
    }

    /// <summary>
    /// One recorded pass: its start, duration, outcome, what it reports (<paramref name="pass"/>'s answer) or its error,
    /// and when the next is due (<paramref name="next"/> from now; null: when woken). Answers whether it succeeded;
    /// only the host stopping ends it with an exception.
    /// </summary>
    public async Task<bool> RunPassAsync(string name, Func<CancellationToken, Task<string?>> pass, TimeSpan? next, CancellationToken stoppingToken)
    {
        var worker = _workers.GetOrAdd(name, n => new Worker(n));
        var started = time.GetUtcNow();
        lock (worker)
        {
            worker.Status = Running;
            worker.LastStartedAt = started;
        }
        string? result = null;
        Exception? error = null;
        try
        {
            result = await pass(stoppingToken);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            lock (worker) worker.Status = Waiting;
            throw;
        }
        catch (Exception e)
        {
            error = e;
            // An unreachable database is expected now and then; anything else is a defect to look at.
            var level = e is NpgsqlException or TimeoutException or IOException ? LogLevel.Warning : LogLevel.Error;
            logger.Log(level, e, "Background job {Worker} failed; it runs again at its next pass.", name);
        }
        var finished = time.GetUtcNow();
        lock (worker)
        {
            worker.Status = Waiting;
            worker.LastFinishedAt = finished;
            worker.LastDuration = finished - started;
            worker.LastOutcome = error is null ? Succeeded : Failed;
            worker.LastResult = error is null ? result : null;
            worker.Runs++;
            if (error is not null)
            {
                worker.Failures++;
                worker.LastError = Describe(error);
                worker.LastErrorAt = finished;
            }
            worker.NextRunAt = next is { } n ? finished + n : null;
        }
        return error is null;
    }

    /// <summary>When the job runs next, for a job with its own schedule (null: when something wakes it).</summary>
    public void SetNextRun(string name, DateTimeOffset? at)
    {
        var worker = _workers.GetOrAdd(name, n => new Worker(n));
        lock (worker) worker.NextRunAt = at;
    }

    /// <summary>The type and message only: a stack trace is for the log, not for an API answer.</summary>
    private static string Describe(Exception e)
    {
        var text = $"{e.GetType().Name}: {e.Message}";
        return text.Length <= MaxErrorLength ? text : text[..MaxErrorLength];
    }

    /// <summary>Every job known so far, by name.</summary>
    public IReadOnlyList<WorkerSnapshot> List() =>
        _workers.Values.Select(w =>
        {
            lock (w) return w.Snapshot();
        }).OrderBy(w => w.Name, StringComparer.Ordinal).ToList();

    private sealed class Worker(string name)
    {
        public string Description { get; set; } = "";
        public TimeSpan? Interval { get; set; }
        public string Status { get; set; } = Waiting;
        public DateTimeOffset? LastStartedAt { get; set; }
        public DateTimeOffset? LastFinishedAt { get; set; }
        public TimeSpan? LastDuration { get; set; }
        public string? LastOutcome { get; set; }
        public string? LastResult { get; set; }
        public string? LastError { get; set; }
        public DateTimeOffset? LastErrorAt { get; set; }
        public DateTimeOffset? NextRunAt { get; set; }
        public long Runs { get; set; }
        public long Failures { get; set; }

        public WorkerSnapshot Snapshot() => new(name, Description, Status, Interval, LastStartedAt, LastFinishedAt, LastDuration,
            LastOutcome, LastResult, LastError, LastErrorAt, Status == Off ? null : NextRunAt, Runs, Failures);
    }
}

public sealed record WorkerSnapshot(
    string Name, string Description, string Status, TimeSpan? Interval, DateTimeOffset? LastStartedAt, DateTimeOffset? LastFinishedAt,
    TimeSpan? LastDuration, string? LastOutcome, string? LastResult, string? LastError, DateTimeOffset? LastErrorAt,
    DateTimeOffset? NextRunAt, long Runs, long Failures);
