using System.Buffers;
using System.Text.Json;

namespace Integrations.Common;

/// <summary>
/// A UTF-8 JSON writer and its buffer kept per thread for work done on every call (canonical forms, log lines), so
/// each use resets them instead of allocating both. A use nested in another on the same thread (a value's
/// <c>ToString</c> that logs) gets a writer of its own; a buffer that grew past 64 KB is let go when its use ends.
/// </summary>
internal static class ThreadJsonWriter
{
    private const int KeptBufferBytes = 64 * 1024;

    [ThreadStatic] private static ArrayBufferWriter<byte>? _buffer;
    [ThreadStatic] private static Utf8JsonWriter? _writer;
    [ThreadStatic] private static bool _inUse;

    /// <summary>The thread's writer, reset and empty, until the lease is disposed.</summary>
    public static Lease Rent()
    {
        if (_inUse)
        {
            var own = new ArrayBufferWriter<byte>(1024);
            return new Lease(new Utf8JsonWriter(own), own, owned: false);
        }
        var buffer = _buffer ??= new ArrayBufferWriter<byte>(1024);
        buffer.ResetWrittenCount();
        var writer = _writer ??= new Utf8JsonWriter(buffer);
        writer.Reset(buffer); // also clears a state a failed use left mid-value
        _inUse = true;
        return new Lease(writer, buffer, owned: true);
    }

    public readonly ref struct Lease(Utf8JsonWriter writer, ArrayBufferWriter<byte> buffer, bool owned)
    {
        public Utf8JsonWriter Writer { get; } = writer;

        /// <summary>What was written: valid until the thread's next use, so hash it, decode it or copy it at once.</summary>
        public ReadOnlySpan<byte> Written
        {
            get
            {
                Writer.Flush();
                return buffer.WrittenSpan;
            }
        }

        public void Dispose()
        {
            if (!owned) return;
            _inUse = false;
            if (buffer.Capacity <= KeptBufferBytes) return;
            _buffer = null;
            _writer = null;
        }
    }
}
