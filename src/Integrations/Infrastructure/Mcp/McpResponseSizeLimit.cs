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

/// <summary>Caps every response body at a byte count: by Content-Length up front, and by counting while it streams (SSE).</summary>
internal sealed class McpResponseSizeLimit(long maxBytes) : DelegatingHandler
{
    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken ct)
    {
        var response = await base.SendAsync(request, ct);
        if (response.Content.Headers.ContentLength is long length && length > maxBytes)
        {
            response.Dispose();
            throw new McpResponseTooLargeException(maxBytes);
        }
        response.Content = new LimitedContent(response.Content, maxBytes);
        return response;
    }

    private sealed class LimitedContent : HttpContent
    {
        private readonly HttpContent _inner;
        private readonly long _max;

        public LimitedContent(HttpContent inner, long max)
        {
            _inner = inner;
            _max = max;
            foreach (var header in inner.Headers) Headers.TryAddWithoutValidation(header.Key, header.Value);
        }

        protected override async Task<Stream> CreateContentReadStreamAsync(CancellationToken ct) =>
            new LimitedStream(await _inner.ReadAsStreamAsync(ct), _max);

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

    private sealed class LimitedStream(Stream inner, long max) : Stream
    {
        private long _read;

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => _read; set => throw new NotSupportedException(); }

        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override int Read(byte[] buffer, int offset, int count) => Count(inner.Read(buffer, offset, count));

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken ct = default) =>
            Count(await inner.ReadAsync(buffer, ct));

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken ct) =>
            ReadAsync(buffer.AsMemory(offset, count), ct).AsTask();

        private int Count(int read)
        {
            _read += read;
            if (_read > max) throw new McpResponseTooLargeException(max);
            return read;
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing) inner.Dispose();
            base.Dispose(disposing);
        }
    }
}
