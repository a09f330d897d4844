using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace Integrations.Infrastructure.Http;

/// <summary>
/// Caps request bodies at 1 MiB on every server (Kestrel enforces the feature; hosts without it,
/// such as the test server, get the same cap from the declared length and a counting stream).
/// </summary>
public static class RequestBodyLimit
{
    public const long MaxBytes = 1024 * 1024;

    public static Task Enforce(HttpContext context, RequestDelegate next)
    {
        if (context.Request.ContentLength > MaxBytes)
        {
            throw new BadHttpRequestException("Request body too large.", StatusCodes.Status413PayloadTooLarge);
        }
        var feature = context.Features.Get<IHttpMaxRequestBodySizeFeature>();
        if (feature is { IsReadOnly: false }) feature.MaxRequestBodySize = MaxBytes;
        else context.Request.Body = new LimitedStream(context.Request.Body, MaxBytes);
        return next(context);
    }

    private sealed class LimitedStream(Stream inner, long limit) : Stream
    {
        private long _read;

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => _read; set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => Count(inner.Read(buffer, offset, count));

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken ct = default) =>
            Count(await inner.ReadAsync(buffer, ct));

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken ct) =>
            ReadAsync(buffer.AsMemory(offset, count), ct).AsTask();

        private int Count(int read)
        {
            _read += read;
            if (_read > limit) throw new BadHttpRequestException("Request body too large.", StatusCodes.Status413PayloadTooLarge);
            return read;
        }

        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
