using System.Collections.Concurrent;
using Google.Protobuf;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Integrations.Tests.Support;

/// <summary>One export request as the receiver got it: its path, content type and protobuf body.</summary>
public sealed record OtlpExport(string Path, string? ContentType, byte[] Body);

/// <summary>A span of an OTLP/HTTP trace export, as far as the tests read it.</summary>
public sealed record OtlpSpan(string TraceId, string SpanId, string ParentSpanId, string Name, string Scope, IReadOnlyDictionary<string, string> Attributes);

/// <summary>A log record of an OTLP/HTTP log export.</summary>
public sealed record OtlpLogRecord(string TraceId, string SpanId, string Severity, string Body, IReadOnlyDictionary<string, string> Attributes);

/// <summary>
/// An OTLP/HTTP collector in the test process: Kestrel on 127.0.0.1 accepting <c>POST /v1/traces</c>, <c>/v1/metrics</c>
/// and <c>/v1/logs</c> with protobuf bodies (anything else is 404, so a wrong path shows up as a missing export), and
/// just enough of the OTLP messages (opentelemetry-proto, collector/*/v1 and their parts) decoded by field number.
/// </summary>
public sealed class OtlpReceiver : IAsyncDisposable
{
    private WebApplication _app = null!;
    private readonly ConcurrentQueue<OtlpExport> _exports = new();

    public Uri Endpoint { get; private set; } = null!;

    public IReadOnlyCollection<OtlpExport> Exports => _exports.ToArray();

    public static async Task<OtlpReceiver> StartAsync()
    {
        var receiver = new OtlpReceiver();
        (receiver._app, var address) = await LoopbackServer.StartAsync(app =>
        {
            foreach (var signal in new[] { "traces", "metrics", "logs" })
            {
                app.MapPost($"/v1/{signal}", async (HttpContext context) =>
                {
                    using var body = new MemoryStream();
                    await context.Request.Body.CopyToAsync(body);
                    receiver._exports.Enqueue(new OtlpExport(context.Request.Path, context.Request.ContentType, body.ToArray()));
                    context.Response.ContentType = "application/x-protobuf";
                    await context.Response.Body.WriteAsync(Array.Empty<byte>()); // an empty Export*ServiceResponse: all accepted
                });
            }
        });
        receiver.Endpoint = new Uri(address);
        return receiver;
    }

    /// <summary>Every span of every trace export so far (ExportTraceServiceRequest → ResourceSpans → ScopeSpans → Span).</summary>
    public IReadOnlyList<OtlpSpan> Spans() =>
        Bodies("/v1/traces")
            .SelectMany(request => Proto.Messages(request, 1))
            .SelectMany(resourceSpans => Proto.Messages(resourceSpans, 2))
            .SelectMany(scopeSpans =>
            {
                var scope = Proto.Messages(scopeSpans, 1).Select(s => Proto.String(s, 1)).FirstOrDefault() ?? "";
                return Proto.Messages(scopeSpans, 2).Select(span => new OtlpSpan(
                    Proto.Hex(span, 1), Proto.Hex(span, 2), Proto.Hex(span, 4), Proto.String(span, 5) ?? "", scope, Proto.Attributes(span, 9)));
            })
            .ToList();

    /// <summary>Every log record so far (ExportLogsServiceRequest → ResourceLogs → ScopeLogs → LogRecord).</summary>
    public IReadOnlyList<OtlpLogRecord> LogRecords() =>
        Bodies("/v1/logs")
            .SelectMany(request => Proto.Messages(request, 1))
            .SelectMany(resourceLogs => Proto.Messages(resourceLogs, 2))
            .SelectMany(scopeLogs => Proto.Messages(scopeLogs, 2))
            .Select(record => new OtlpLogRecord(Proto.Hex(record, 9), Proto.Hex(record, 10), Proto.String(record, 3) ?? "",
                Proto.Messages(record, 5).Select(Proto.AnyValue).FirstOrDefault() ?? "", Proto.Attributes(record, 6)))
            .ToList();

    /// <summary>The names of every metric exported so far (ExportMetricsServiceRequest → ResourceMetrics → ScopeMetrics → Metric).</summary>
    public IReadOnlySet<string> MetricNames() =>
        Bodies("/v1/metrics")
            .SelectMany(request => Proto.Messages(request, 1))
            .SelectMany(resourceMetrics => Proto.Messages(resourceMetrics, 2))
            .SelectMany(scopeMetrics => Proto.Messages(scopeMetrics, 2))
            .Select(metric => Proto.String(metric, 1) ?? "")
            .ToHashSet();

    private IEnumerable<byte[]> Bodies(string path) => _exports.Where(e => e.Path == path).Select(e => e.Body);

    public async ValueTask DisposeAsync() => await _app.DisposeAsync();

    /// <summary>Protobuf wire format read field by field with <see cref="CodedInputStream"/>: no generated classes.</summary>
    private static class Proto
    {
        private static List<(int Field, object Value)> Fields(byte[] message)
        {
            var input = new CodedInputStream(message);
            var fields = new List<(int Field, object Value)>();
            uint tag;
            while ((tag = input.ReadTag()) != 0)
            {
                var field = WireFormat.GetTagFieldNumber(tag);
                switch (WireFormat.GetTagWireType(tag))
                {
                    case WireFormat.WireType.LengthDelimited: fields.Add((field, input.ReadBytes().ToByteArray())); break;
                    case WireFormat.WireType.Varint: fields.Add((field, input.ReadUInt64())); break;
                    case WireFormat.WireType.Fixed64: fields.Add((field, input.ReadFixed64())); break;
                    case WireFormat.WireType.Fixed32: fields.Add((field, input.ReadFixed32())); break;
                    default: input.SkipLastField(); break;
                }
            }
            return fields;
        }

        public static IEnumerable<byte[]> Messages(byte[] message, int field) =>
            Fields(message).Where(f => f.Field == field && f.Value is byte[]).Select(f => (byte[])f.Value);

        public static string? String(byte[] message, int field) =>
            Messages(message, field).Select(b => System.Text.Encoding.UTF8.GetString(b)).LastOrDefault();

        public static string Hex(byte[] message, int field) =>
            Messages(message, field).Select(b => Convert.ToHexStringLower(b)).LastOrDefault() ?? "";

        /// <summary>AnyValue: string (1), bool (2), int (3), double (4) as text; other kinds as empty.</summary>
        public static string AnyValue(byte[] value)
        {
            foreach (var (field, v) in Fields(value))
            {
                switch (field)
                {
                    case 1: return System.Text.Encoding.UTF8.GetString((byte[])v);
                    case 2: return ((ulong)v != 0).ToString();
                    case 3: return ((long)(ulong)v).ToString(System.Globalization.CultureInfo.InvariantCulture);
                    case 4: return BitConverter.Int64BitsToDouble((long)(ulong)v).ToString(System.Globalization.CultureInfo.InvariantCulture);
                }
            }
            return "";
        }

        /// <summary>repeated KeyValue (key 1, AnyValue 2) at <paramref name="field"/>.</summary>
        public static Dictionary<string, string> Attributes(byte[] message, int field)
        {
            var attributes = new Dictionary<string, string>();
            foreach (var pair in Messages(message, field))
            {
                attributes[String(pair, 1) ?? ""] = Messages(pair, 2).Select(AnyValue).FirstOrDefault() ?? "";
            }
            return attributes;
        }
    }
}
