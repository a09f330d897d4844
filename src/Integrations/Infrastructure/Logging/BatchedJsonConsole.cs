using System.Collections.Concurrent;
using System.Globalization;
using System.Text.Json;
using Integrations.Common;
using Microsoft.Extensions.Logging;

namespace Integrations.Infrastructure.Logging;

/// <summary>
/// The host's console log: one JSON object per line — <c>Timestamp</c> (UTC, milliseconds), <c>EventId</c>,
/// <c>LogLevel</c>, <c>Category</c>, <c>Message</c>, <c>Exception</c> when there is one, <c>State</c> (the message's
/// values) and <c>Scopes</c> (each a <c>Message</c> and its values, the activity's trace and span ids among them).
/// <para>
/// Why not the framework's JSON console: it hands every line to its writer thread on its own, waking that thread once
/// per line, which then writes the line with a system call of its own. At one request log line per call that cost
/// 0.06 ms of CPU per governed call at saturation (bench/README.md, issue 20). Here a line is formatted as UTF-8 on the
/// thread that logs it, queued, and the writer thread, woken by the first line after it went idle, waits a moment and
/// writes everything queued with one write to standard output (the console's own writer also splits every line into
/// writes of 256 characters). Lines are never dropped: when the queue is full, the thread that logs
/// writes the queue out itself. Disposal writes what is left.
/// </para>
/// </summary>
[ProviderAlias("Console")]
public sealed class BatchedJsonConsole : ILoggerProvider, ISupportExternalScope
{
    /// <summary>Lines the queue holds before a logging thread writes them out itself.</summary>
    public const int MaxQueuedLines = 10_000;

    /// <summary>How long the writer gathers lines after the first one woke it.</summary>
    private static readonly TimeSpan Gather = TimeSpan.FromMilliseconds(2);

    private readonly Stream _output;
    private readonly ConcurrentQueue<byte[]> _lines = new();
    private readonly SemaphoreSlim _wake = new(0);
    private readonly Lock _writing = new();
    private readonly Thread _writer;
    private IExternalScopeProvider _scopes = new LoggerExternalScopeProvider();
    private int _queued;
    private int _awake;
    private volatile bool _stopping;
    private readonly byte[] _batch = new byte[64 * 1024];

    /// <param name="output">Where lines go: the process's standard output (<see cref="ConsoleLogOutput"/> names another).</param>
    public BatchedJsonConsole(Stream output)
    {
        _output = output;
        _writer = new Thread(WriteLoop) { IsBackground = true, Name = "Console log writer" };
        _writer.Start();
    }

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void SetScopeProvider(IExternalScopeProvider scopeProvider) => _scopes = scopeProvider;

    /// <remarks>
    /// A line logged after disposal (a component still stopping) is written at once by the thread that logs it; the
    /// wake-up semaphore is never disposed, so such a line cannot throw where it is logged.
    /// </remarks>
    public void Dispose()
    {
        _stopping = true;
        _wake.Release();
        _writer.Join(TimeSpan.FromSeconds(5));
        WriteQueued();
    }

    private void Enqueue(byte[] line)
    {
        _lines.Enqueue(line);
        if (Interlocked.Increment(ref _queued) > MaxQueuedLines || _stopping)
        {
            WriteQueued(); // the writer cannot keep up (or has stopped): this thread waits its turn and writes, rather than drop a line
        }
        else if (Interlocked.Exchange(ref _awake, 1) == 0)
        {
            _wake.Release();
        }
    }

    private void WriteLoop()
    {
        while (!_stopping)
        {
            _wake.Wait();
            if (!_stopping) Thread.Sleep(Gather);
            // Lines queued from here on wake the writer again; the ones before are written below.
            Volatile.Write(ref _awake, 0);
            WriteQueued();
        }
    }

    /// <summary>
    /// Writes the queued lines, as many as fit in the batch buffer per write; a line longer than the buffer goes on its
    /// own. The buffer never grows, however long the queue.
    /// </summary>
    private void WriteQueued()
    {
        lock (_writing)
        {
            var length = 0;
            while (_lines.TryDequeue(out var line))
            {
                Interlocked.Decrement(ref _queued);
                if (length + line.Length + 1 > _batch.Length)
                {
                    Write(_batch, length);
                    length = 0;
                }
                if (line.Length + 1 > _batch.Length)
                {
                    Write([.. line, (byte)'\n'], line.Length + 1);
                    continue;
                }
                line.CopyTo(_batch, length);
                length += line.Length;
                _batch[length++] = (byte)'\n';
            }
            Write(_batch, length);
        }
    }

    private void Write(byte[] bytes, int length)
    {
        if (length == 0) return;
        try
        {
            _output.Write(bytes, 0, length);
            _output.Flush();
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            // standard output is gone (the process is ending): there is nowhere left to write
        }
    }

    /// <summary>The line as UTF-8, formatted with the thread's reused writer (<see cref="ThreadJsonWriter"/>).</summary>
    private static byte[] Format<TState>(string category, LogLevel level, EventId eventId, TState state, Exception? exception,
        Func<TState, Exception?, string> formatter, IExternalScopeProvider scopes)
    {
        using var lease = ThreadJsonWriter.Rent();
        var json = lease.Writer;
        json.WriteStartObject();
        Span<char> timestamp = stackalloc char[24];
        DateTime.UtcNow.TryFormat(timestamp, out var written, "yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture);
        json.WriteString("Timestamp", timestamp[..written]);
        json.WriteNumber("EventId", eventId.Id);
        json.WriteString("LogLevel", LevelName(level));
        json.WriteString("Category", category);
        json.WriteString("Message", formatter(state, exception));
        if (exception is not null) json.WriteString("Exception", exception.ToString());
        if (state is IReadOnlyCollection<KeyValuePair<string, object?>> values)
        {
            json.WriteStartObject("State");
            foreach (var (key, value) in values) WriteValue(json, key, value);
            json.WriteEndObject();
        }
        json.WriteStartArray("Scopes");
        scopes.ForEachScope(static (scope, writer) => WriteScope(writer, scope), json);
        json.WriteEndArray();
        json.WriteEndObject();
        return lease.Written.ToArray();
    }

    private static void WriteScope(Utf8JsonWriter json, object? scope)
    {
        if (scope is IEnumerable<KeyValuePair<string, object?>> values)
        {
            json.WriteStartObject();
            json.WriteString("Message", scope.ToString());
            foreach (var (key, value) in values) WriteValue(json, key, value);
            json.WriteEndObject();
        }
        else
        {
            json.WriteStringValue(Convert.ToString(scope, CultureInfo.InvariantCulture));
        }
    }

    /// <summary>Numbers and booleans as JSON numbers and booleans, anything else as its invariant text.</summary>
    private static void WriteValue(Utf8JsonWriter json, string key, object? value)
    {
        switch (value)
        {
            case null: json.WriteNull(key); break;
            case bool b: json.WriteBoolean(key, b); break;
            case int i: json.WriteNumber(key, i); break;
            case long l: json.WriteNumber(key, l); break;
            case double d when double.IsFinite(d): json.WriteNumber(key, d); break;
            case float f when float.IsFinite(f): json.WriteNumber(key, f); break;
            case decimal m: json.WriteNumber(key, m); break;
            case short or ushort or byte or sbyte or uint:
                json.WriteNumber(key, Convert.ToInt64(value, CultureInfo.InvariantCulture)); break;
            case ulong u: json.WriteNumber(key, u); break;
            case string s: json.WriteString(key, s); break;
            default: json.WriteString(key, Convert.ToString(value, CultureInfo.InvariantCulture)); break;
        }
    }

    private static string LevelName(LogLevel level) => level switch
    {
        LogLevel.Trace => "Trace",
        LogLevel.Debug => "Debug",
        LogLevel.Information => "Information",
        LogLevel.Warning => "Warning",
        LogLevel.Error => "Error",
        LogLevel.Critical => "Critical",
        _ => level.ToString(),
    };

    private sealed class Logger(BatchedJsonConsole console, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => console._scopes.Push(state);

        public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel)) return;
            console.Enqueue(Format(category, logLevel, eventId, state, exception, formatter, console._scopes));
        }
    }
}

/// <summary>Where the console log goes instead of standard output (a test reads the lines from it).</summary>
public sealed record ConsoleLogOutput(Stream Stream);
