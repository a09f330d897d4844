using System.Text;
using System.Text.Json;
using Integrations.Infrastructure.Logging;
using Microsoft.Extensions.Logging;

namespace Integrations.Tests.Platform;

/// <summary><see cref="BatchedJsonConsole"/>: every line a whole JSON object, none lost under a burst, all written by disposal.</summary>
public sealed class BatchedJsonConsoleTests
{
    [Fact]
    public void A_line_carries_level_category_message_values_exception_and_scopes()
    {
        var output = new MemoryStream();
        using (var console = new BatchedJsonConsole(output)) // disposal writes what is queued
        using (var factory = LoggerFactory.Create(b => b.ClearProviders().AddProvider(console)))
        {
            var logger = factory.CreateLogger("Test.Category");
            using (logger.BeginScope(new Dictionary<string, object?> { ["RequestId"] = "r-1", ["Tenant"] = null }))
            using (logger.BeginScope("plain scope"))
            {
                logger.LogWarning(new InvalidOperationException("boom"), "{Method} {Status} {DurationMs} ms {Ok} \"{Text}\"", "POST", 201, 1.5, true, "a\nb");
            }
        }

        var line = JsonDocument.Parse(Assert.Single(Lines(output))).RootElement;
        Assert.Matches(@"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", line.GetProperty("Timestamp").GetString());
        Assert.Equal(("Warning", "Test.Category", "POST 201 1.5 ms True \"a\nb\""),
            (line.GetProperty("LogLevel").GetString(), line.GetProperty("Category").GetString(), line.GetProperty("Message").GetString()));
        Assert.StartsWith("System.InvalidOperationException: boom", line.GetProperty("Exception").GetString());
        var state = line.GetProperty("State");
        Assert.Equal((201, 1.5, true, "a\nb"), (state.GetProperty("Status").GetInt32(), state.GetProperty("DurationMs").GetDouble(),
            state.GetProperty("Ok").GetBoolean(), state.GetProperty("Text").GetString()));
        var scopes = line.GetProperty("Scopes").EnumerateArray().ToList();
        Assert.Equal("r-1", scopes[0].GetProperty("RequestId").GetString());
        Assert.Equal(JsonValueKind.Null, scopes[0].GetProperty("Tenant").ValueKind);
        Assert.Equal("plain scope", scopes[1].GetString());
    }

    [Fact]
    public async Task A_burst_larger_than_the_queue_from_many_threads_loses_no_line_and_mixes_none()
    {
        var output = new MemoryStream();
        const int threads = 8;
        const int perThread = BatchedJsonConsole.MaxQueuedLines / 2;
        using (var console = new BatchedJsonConsole(output))
        using (var factory = LoggerFactory.Create(b => b.ClearProviders().AddProvider(console)))
        {
            var logger = factory.CreateLogger("Burst");
            await Task.WhenAll(Enumerable.Range(0, threads).Select(t => Task.Run(() =>
            {
                for (var i = 0; i < perThread; i++) logger.LogInformation("line {Thread} {Index}", t, i);
            })));
        }

        var seen = Lines(output).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("State"))
            .Select(s => (s.GetProperty("Thread").GetInt32(), s.GetProperty("Index").GetInt32())).ToList();
        Assert.Equal(threads * perThread, seen.Count);
        Assert.Equal(threads * perThread, seen.Distinct().Count());
        for (var t = 0; t < threads; t++)
        {
            var own = seen.Where(s => s.Item1 == t).Select(s => s.Item2).ToList();
            Assert.Equal(Enumerable.Range(0, perThread), own); // a thread's lines keep their order
        }
    }

    [Fact]
    public void A_line_longer_than_the_batch_buffer_is_written_whole_between_its_neighbours()
    {
        var output = new MemoryStream();
        var text = new string('x', 100 * 1024);
        using (var console = new BatchedJsonConsole(output))
        {
            var logger = console.CreateLogger("Long");
            logger.LogInformation("before");
            logger.LogInformation("{Text}", text);
            logger.LogInformation("after");
        }

        var lines = Lines(output).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("Message").GetString()).ToList();
        Assert.Equal(["before", text, "after"], lines);
    }

    [Fact]
    public void A_line_logged_while_another_is_being_formatted_on_the_same_thread_leaves_both_whole()
    {
        var output = new MemoryStream();
        using (var console = new BatchedJsonConsole(output))
        {
            var logger = console.CreateLogger("Nested");
            logger.LogInformation("outer {Value}", new LogsWhenFormatted(logger));
        }

        // The value is formatted twice (the message, then State), so "inner" is logged twice before the outer line.
        var lines = Lines(output).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.Equal(["inner", "inner", "outer formatted"], lines.Select(l => l.GetProperty("Message").GetString()));
        Assert.Equal("formatted", lines[^1].GetProperty("State").GetProperty("Value").GetString());
    }

    [Fact]
    public void A_line_logged_after_disposal_is_written_at_once_and_throws_nothing()
    {
        var output = new MemoryStream();
        var console = new BatchedJsonConsole(output);
        var logger = console.CreateLogger("Late");
        console.Dispose();

        logger.LogInformation("stopping {Component}", "late");

        Assert.Equal("late", JsonDocument.Parse(Assert.Single(Lines(output))).RootElement.GetProperty("State").GetProperty("Component").GetString());
    }

    /// <summary>A value whose text is made by logging a line first (as a lazy value that logs would).</summary>
    private sealed class LogsWhenFormatted(ILogger logger)
    {
        public override string ToString()
        {
            logger.LogInformation("inner");
            return "formatted";
        }
    }

    private static string[] Lines(MemoryStream output) =>
        Encoding.UTF8.GetString(output.ToArray()).Split('\n', StringSplitOptions.RemoveEmptyEntries);
}
