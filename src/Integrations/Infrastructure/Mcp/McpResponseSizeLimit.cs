using System.Net;

namespace Integrations.Infrastructure.Mcp;

/// <summary>
/// A response larger than the limit. Deliberately not an <see cref="IOException"/>: the SDK swallows those
/// while reading a stream and would report a missing reply instead of the real cause.
/// </summary>
public sealed class McpResponseTooLargeException(long limit)
    : Exception($"The response exceeded {limit} bytes.")
{
    public long Limit { get; } = limit;
}

/// <summary>
/// Caps what a server may send at a byte count: a plain response body as a whole (by Content-Length up front, and by
/// counting while it is read), an event stream per SSE event, since one stream carries many messages (progress,
/// notifications, and on the legacy transport the whole session).
/// </summary>
internal sealed class McpResponseSizeLimit(long maxBytes) : DelegatingHandler
{
    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken ct)
    {
        var response = await base.SendAsync(request, ct);
        var eventStream = response.Content.Headers.ContentType?.MediaType == "text/event-stream";
        if (!eventStream && response.Content.Headers.ContentLength is long length && length > maxBytes)
        {
            response.Dispose();
            throw new McpResponseTooLargeException(maxBytes);
        }
        response.Content = new LimitedContent(response.Content, maxBytes, eventStream);
        return response;
    }

    private sealed class LimitedContent : HttpContent
    {
        private readonly HttpContent _inner;
        private readonly long _max;
        private readonly bool _perEvent;

        public LimitedContent(HttpContent inner, long max, bool perEvent)
        {
            _inner = inner;
            _max = max;
            _perEvent = perEvent;
            foreach (var header in inner.Headers) Headers.TryAddWithoutValidation(header.Key, header.Value);
        }

        protected override async Task<Stream> CreateContentReadStreamAsync(CancellationToken ct) =>
            new LimitedStream(await _inner.ReadAsStreamAsync(ct), _max, _perEvent);

        protected override Task<Stream> CreateContentReadStreamAsync() => CreateContentReadStreamAsync(CancellationToken.None);

        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken ct)
        {
            await using var limited = await CreateContentReadStreamAsync(ct);
            await limited.CopyToAsync(stream, ct);
        }

        protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) =>
            SerializeToStreamAsync(stream, context, CancellationToken.None);

        protected override bool TryComputeLength(out long length)
        {
            length = 0;
            return false;
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing) _inner.Dispose();
            base.Dispose(disposing);
        }
    }

    /// <summary>Counts bytes read: in total, or per SSE event (an event ends at a blank line).</summary>
    internal sealed class LimitedStream(Stream inner, long max, bool perEvent) : Stream
    {
        private long _read;
        private long _eventBytes;
        private bool _lineEmpty = true;

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => _read; set => throw new NotSupportedException(); }

        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override int Read(byte[] buffer, int offset, int count)
        {
            var read = inner.Read(buffer, offset, count);
            Count(buffer.AsSpan(offset, read));
            return read;
        }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken ct = default)
        {
            var read = await inner.ReadAsync(buffer, ct);
            Count(buffer.Span[..read]);
            return read;
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken ct) =>
            ReadAsync(buffer.AsMemory(offset, count), ct).AsTask();

        private void Count(ReadOnlySpan<byte> data)
        {
            _read += data.Length;
            if (!perEvent)
            {
                if (_read > max) throw new McpResponseTooLargeException(max);
                return;
            }
            foreach (var b in data)
            {
                if (b == (byte)'\r') continue;
                if (b == (byte)'\n')
                {
                    _eventBytes = _lineEmpty ? 0 : _eventBytes + 1;
                    _lineEmpty = true;
                    continue;
                }
                _lineEmpty = false;
                if (++_eventBytes > max) throw new McpResponseTooLargeException(max);
            }
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing) inner.Dispose();
            base.Dispose(disposing);
        }
    }
}
