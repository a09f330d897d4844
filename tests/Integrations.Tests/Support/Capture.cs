using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.Extensions.Logging;

namespace Integrations.Tests.Support;

/// <summary>Every log line (message, structured values, exception text) written through the providers it is added to.</summary>
public sealed class LogCapture : ILoggerProvider
{
    public ConcurrentQueue<string> Lines { get; } = new();

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void Dispose() { }

    private sealed class Logger(LogCapture capture, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull
        {
            capture.Lines.Enqueue($"{category} scope: {state}");
            return null;
        }

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var values = state is IEnumerable<KeyValuePair<string, object?>> pairs ? string.Join("; ", pairs.Select(p => $"{p.Key}={p.Value}")) : "";
            capture.Lines.Enqueue($"{logLevel} {category}: {formatter(state, exception)} [{values}] {exception}");
        }
    }
}

/// <summary>Every activity any source stops while it lives: name, tags, events, status, baggage.</summary>
public sealed class ActivityCapture : IDisposable
{
    private readonly ActivityListener _listener;

    public ActivityCapture()
    {
        _listener = new ActivityListener
        {
            ShouldListenTo = _ => true,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = activity => Lines.Enqueue(Describe(activity)),
        };
        ActivitySource.AddActivityListener(_listener);
    }

    public ConcurrentQueue<string> Lines { get; } = new();

    private static string Describe(Activity activity) =>
        $"{activity.Source.Name} {activity.DisplayName} {activity.OperationName} status={activity.Status}:{activity.StatusDescription} " +
        string.Join(" ", activity.TagObjects.Select(t => $"{t.Key}={t.Value}")) + " " +
        string.Join(" ", activity.Events.Select(e => e.Name + ":" + string.Join(",", e.Tags.Select(t => $"{t.Key}={t.Value}")))) + " " +
        string.Join(" ", activity.Baggage.Select(b => $"{b.Key}={b.Value}"));

    public void Dispose() => _listener.Dispose();
}
