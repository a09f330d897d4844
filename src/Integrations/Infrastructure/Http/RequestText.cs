using System.Buffers;
using System.Text;
using System.Text.Json;
using System.Text.Unicode;
using Integrations.Common;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Routing.Patterns;

namespace Integrations.Infrastructure.Http;

/// <summary>
/// Refuses, before anything binds or stores it, text that PostgreSQL cannot hold or that has no single byte form to
/// hash: a NUL character (U+0000), a lone UTF-16 surrogate, or bytes that are not UTF-8. It looks at every string of
/// a request — the path's segments, the query string, the headers the service reads, and every property name and
/// string value of a JSON body, at any depth — and answers 400 <c>validation_failed</c> naming the first bad field.
/// <para>
/// It reads the raw bytes, not what the framework decoded from them: ASP.NET Core and System.Text.Json replace
/// undecodable bytes with U+FFFD or keep a lone surrogate escape (<c>"\ud800"</c>) as it was sent, so what slices see
/// may look clean, or may fail only when it is hashed or sent to PostgreSQL (a 500, and a connection Npgsql could be
/// left confused by). One check at the edge keeps each slice's validator about its own rules.
/// </para>
/// </summary>
public static class RequestText
{
    /// <summary>The request headers the service reads (API keys, idempotency keys); the rest are Kestrel's or the framework's.</summary>
    public static readonly string[] HeadersRead = ["Authorization", "X-Api-Key", IdempotencyKeys.Header];

    public static async Task Enforce(HttpContext context, RequestDelegate next)
    {
        var problem = InHeaders(context.Request) ?? InPath(context) ?? InQuery(context.Request.QueryString.Value);
        if (problem is null && HasJsonBody(context.Request))
        {
            var body = await BufferBodyAsync(context);
            problem = InJson(body.Span);
        }
        if (problem is { } found)
        {
            await Problems.WriteAsync(context, Error.Validation(found.Field, found.Message));
            return;
        }
        await next(context);
    }

    private static (string Field, string Message)? InHeaders(HttpRequest request)
    {
        foreach (var name in HeadersRead)
        {
            foreach (var value in request.Headers[name])
            {
                if (value is not null && Check(value) is { } message) return (name, message);
            }
        }
        return null;
    }

    /// <summary>Checks the path as it arrived (percent-escapes undone into bytes), naming a bad segment by its route parameter.</summary>
    private static (string Field, string Message)? InPath(HttpContext context)
    {
        var raw = context.Features.Get<IHttpRequestFeature>()?.RawTarget;
        if (string.IsNullOrEmpty(raw) || raw[0] != '/') raw = context.Request.PathBase.Add(context.Request.Path).ToUriComponent();
        var query = raw.IndexOf('?', StringComparison.Ordinal);
        var path = query < 0 ? raw : raw[..query];
        var segments = path.Split('/');
        for (var i = 1; i < segments.Length; i++)
        {
            if (CheckEscaped(segments[i], plusIsSpace: false) is { } message) return (RouteParameterAt(context, i - 1) ?? "path", message);
        }
        foreach (var (key, value) in context.Request.RouteValues)
        {
            if (value is string text && Check(text) is { } message) return (key, message);
        }
        return null;
    }

    private static string? RouteParameterAt(HttpContext context, int segment)
    {
        var pattern = (context.GetEndpoint() as RouteEndpoint)?.RoutePattern;
        if (pattern is null || segment >= pattern.PathSegments.Count) return null;
        return pattern.PathSegments[segment].Parts.OfType<RoutePatternParameterPart>().FirstOrDefault()?.Name;
    }

    private static (string Field, string Message)? InQuery(string? queryString)
    {
        if (string.IsNullOrEmpty(queryString)) return null;
        foreach (var pair in queryString.TrimStart('?').Split('&'))
        {
            var equals = pair.IndexOf('=', StringComparison.Ordinal);
            var key = equals < 0 ? pair : pair[..equals];
            if (CheckEscaped(key, plusIsSpace: true) is { } badKey) return ("query", badKey);
            if (equals >= 0 && CheckEscaped(pair[(equals + 1)..], plusIsSpace: true) is { } message)
            {
                return (Uri.UnescapeDataString(key.Replace('+', ' ')), message);
            }
        }
        return null;
    }

    private static bool HasJsonBody(HttpRequest request) =>
        request.ContentLength is not 0 && request.ContentType is { } type &&
        (type.StartsWith("application/json", StringComparison.OrdinalIgnoreCase) || type.Contains("+json", StringComparison.OrdinalIgnoreCase));

    /// <summary>
    /// Reads the body (its size is already capped by <see cref="RequestBodyLimit"/>) and puts it back as a stream over
    /// the same bytes, so binding reads what was checked.
    /// </summary>
    private static async Task<ReadOnlyMemory<byte>> BufferBodyAsync(HttpContext context)
    {
        var length = context.Request.ContentLength;
        var buffer = new MemoryStream(length is > 0 and <= RequestBodyLimit.MaxBytes ? (int)length : 4096);
        await context.Request.Body.CopyToAsync(buffer, context.RequestAborted);
        buffer.Position = 0;
        context.Request.Body = buffer;
        context.Response.RegisterForDispose(buffer);
        return buffer.GetBuffer().AsMemory(0, (int)buffer.Length);
    }

    /// <summary>
    /// Walks the JSON, keeping where the current value is (each enclosing object's property name as a slice of the
    /// body, each enclosing array's index), and stops at the first bad name or string; names become text only to
    /// report one (<c>arguments.items[2]</c>). JSON that does not parse is left to binding, which refuses it as
    /// <c>malformed_request</c>.
    /// </summary>
    private static (string Field, string Message)? InJson(ReadOnlySpan<byte> json)
    {
        var reader = new Utf8JsonReader(json, new JsonReaderOptions { MaxDepth = 256 });
        List<Step>? path = null;
        var name = Step.None;
        try
        {
            while (reader.Read())
            {
                switch (reader.TokenType)
                {
                    case JsonTokenType.PropertyName:
                        if (CheckJsonString(reader.ValueSpan, reader.ValueIsEscaped) is { } badName) return (Field(json, path, Step.None), badName);
                        name = new Step((int)reader.TokenStartIndex + 1, reader.ValueSpan.Length, -1);
                        continue;
                    case JsonTokenType.StartObject:
                    case JsonTokenType.StartArray:
                        var at = Advance(path, ref name);
                        (path ??= []).Add(at with { Index = reader.TokenType == JsonTokenType.StartArray ? 0 : -1 });
                        continue;
                    case JsonTokenType.EndObject:
                    case JsonTokenType.EndArray:
                        path!.RemoveAt(path.Count - 1);
                        continue;
                    case JsonTokenType.String:
                        var step = Advance(path, ref name);
                        if (CheckJsonString(reader.ValueSpan, reader.ValueIsEscaped) is { } message) return (Field(json, path, step), message);
                        continue;
                    default:
                        Advance(path, ref name);
                        continue;
                }
            }
        }
        catch (JsonException)
        {
            return null;
        }
        return null;
    }

    /// <summary>
    /// Where a value sits in its parent: a property name (<see cref="NameStart"/>, <see cref="NameLength"/> bytes of
    /// the body, as written) or an array position (<see cref="Position"/>); as a frame of the path, <see cref="Index"/>
    /// is the next position in an array, -1 for an object.
    /// </summary>
    private readonly record struct Step(int NameStart, int NameLength, int Position)
    {
        public static readonly Step None = new(-1, 0, -1);

        public int Index { get; init; } = -1;
    }

    /// <summary>The step of the value just read: its property's name, or its position in the enclosing array (advanced).</summary>
    private static Step Advance(List<Step>? path, ref Step name)
    {
        if (name.NameStart >= 0)
        {
            var named = name;
            name = Step.None;
            return named;
        }
        if (path is { Count: > 0 } && path[^1].Index >= 0)
        {
            var array = path[^1];
            path[^1] = array with { Index = array.Index + 1 };
            return Step.None with { Position = array.Index };
        }
        return Step.None;
    }

    private static string Field(ReadOnlySpan<byte> json, List<Step>? path, Step last)
    {
        var field = new StringBuilder();
        foreach (var step in (path ?? []).Append(last))
        {
            if (step.Position >= 0)
            {
                field.Append('[').Append(step.Position).Append(']');
            }
            else if (step.NameStart >= 0)
            {
                if (field.Length > 0) field.Append('.');
                field.Append(JsonSerializer.Deserialize<string>(json.Slice(step.NameStart - 1, step.NameLength + 2)));
            }
        }
        return field.Length > 0 ? field.ToString() : "body";
    }

    /// <summary>
    /// A JSON string as written: its raw bytes must be UTF-8, and its escapes must decode to neither NUL nor a lone
    /// surrogate (a high one followed by a low one is one character, anything else is not text).
    /// </summary>
    private static string? CheckJsonString(ReadOnlySpan<byte> raw, bool escaped)
    {
        if (!Utf8.IsValid(raw)) return NotUtf8;
        if (!escaped) return raw.IndexOf((byte)0) >= 0 ? HasNul : null;
        for (var i = 0; i < raw.Length; i++)
        {
            if (raw[i] == 0) return HasNul;
            if (raw[i] != '\\') continue;
            i++;
            if (raw[i] != 'u') continue;
            var unit = Hex(raw.Slice(i + 1, 4));
            i += 4;
            if (unit == 0) return HasNul;
            if (char.IsLowSurrogate((char)unit)) return LoneSurrogate;
            if (!char.IsHighSurrogate((char)unit)) continue;
            if (i + 6 >= raw.Length || raw[i + 1] != '\\' || raw[i + 2] != 'u' || !char.IsLowSurrogate((char)Hex(raw.Slice(i + 3, 4)))) return LoneSurrogate;
            i += 6;
        }
        return null;
    }

    private static int Hex(ReadOnlySpan<byte> digits) =>
        int.Parse(digits, System.Globalization.NumberStyles.AllowHexSpecifier, System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Percent-escaped text (a path segment, a query key or value): the bytes it stands for must be UTF-8 without NUL.</summary>
    private static string? CheckEscaped(string text, bool plusIsSpace)
    {
        if (Check(text) is { } decoded) return decoded;
        if (text.IndexOf('%', StringComparison.Ordinal) < 0) return null;
        var bytes = ArrayPool<byte>.Shared.Rent(Encoding.UTF8.GetMaxByteCount(text.Length));
        try
        {
            var count = 0;
            for (var i = 0; i < text.Length; i++)
            {
                if (text[i] == '%' && i + 2 < text.Length && Uri.IsHexDigit(text[i + 1]) && Uri.IsHexDigit(text[i + 2]))
                {
                    bytes[count++] = (byte)Convert.ToInt32(text.Substring(i + 1, 2), 16);
                    i += 2;
                }
                else if (plusIsSpace && text[i] == '+')
                {
                    bytes[count++] = (byte)' ';
                }
                else
                {
                    count += Encoding.UTF8.GetBytes(text.AsSpan(i, char.IsSurrogatePair(text, i) ? 2 : 1), bytes.AsSpan(count));
                    if (char.IsSurrogatePair(text, i)) i++;
                }
            }
            var unescaped = bytes.AsSpan(0, count);
            if (!Utf8.IsValid(unescaped)) return NotUtf8;
            return unescaped.IndexOf((byte)0) >= 0 ? HasNul : null;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(bytes);
        }
    }

    /// <summary>Decoded text: no NUL, no lone surrogate.</summary>
    public static string? Check(string text)
    {
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (c == '\0') return HasNul;
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1])) i++;
            else if (char.IsSurrogate(c)) return LoneSurrogate;
        }
        return null;
    }

    private const string HasNul = "must not contain a NUL character (U+0000).";
    private const string LoneSurrogate = "must not contain a lone UTF-16 surrogate.";
    private const string NotUtf8 = "must be valid UTF-8.";
}
