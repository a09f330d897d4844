using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Integrations.Common;
using Integrations.Infrastructure.Audit;

namespace Integrations.Tests.Platform;

/// <summary>
/// The canonical form is what tool pins, call hashes and every audit event's MAC cover, so it must never change: each
/// case states the exact bytes, written before the form's buffers were reused per thread.
/// </summary>
public sealed class CanonicalJsonTests
{
    [Theory]
    [InlineData("""{"b":1,"a":{"d":[3,{"z":true,"y":null}],"c":"x"}}""", """{"a":{"c":"x","d":[3,{"y":null,"z":true}]},"b":1}""")]
    [InlineData("""{ "a" : [ ] , "b" : { } }""", """{"a":[],"b":{}}""")]
    // Ordinal order of UTF-16 code units: upper case, '_', lower case, Latin-1, a surrogate pair, U+FFFD.
    [InlineData("""{"\uFFFD":6,"😀":5,"é":4,"a":3,"_":2,"B":1}""", """{"B":1,"_":2,"a":3,"\u00E9":4,"\uD83D\uDE00":5,"\uFFFD":6}""")]
    // The same name twice keeps its order.
    [InlineData("""{"b":0,"a":2,"a":1}""", """{"a":2,"a":1,"b":0}""")]
    [InlineData("""["<a href='x'>&</a>","line\nbreak","\u0041"]""", """["\u003Ca href=\u0027x\u0027\u003E\u0026\u003C/a\u003E","line\nbreak","A"]""")]
    [InlineData("""[1E+2,1.50,-7,1e400]""", """[1E+2,1.50,-7,1e400]""")]
    public void Each_value_has_exactly_this_form(string json, string canonical)
    {
        using var document = JsonDocument.Parse(json);

        Assert.Equal(canonical, Encoding.UTF8.GetString(CanonicalJson.Serialize(document.RootElement)));
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(canonical))), CanonicalJson.Sha256(document.RootElement));
    }

    [Fact]
    public void Normalized_numbers_are_decimals_without_exponent_or_trailing_zeros_and_others_stay_as_written()
    {
        using var document = JsonDocument.Parse("""{"n":[1E+2,1.50,-7,0.000,12345678901234567890.10,1e400]}""");

        Assert.Equal("""{"n":[100,1.5,-7,0,12345678901234567890.1,1e400]}""",
            Encoding.UTF8.GetString(CanonicalJson.Serialize(document.RootElement, normalizeNumbers: true)));
    }

    [Fact]
    public void A_large_object_is_sorted_and_every_member_kept()
    {
        var members = Enumerable.Range(0, 5_000).Reverse().Select(i => $"\"k{i:D5}\":{i}");
        using var document = JsonDocument.Parse("{" + string.Join(",", members) + "}");

        var canonical = Encoding.UTF8.GetString(CanonicalJson.Serialize(document.RootElement));

        Assert.Equal("{" + string.Join(",", Enumerable.Range(0, 5_000).Select(i => $"\"k{i:D5}\":{i}")) + "}", canonical);
    }

    [Fact]
    public void A_value_that_cannot_be_written_leaves_the_next_one_unharmed()
    {
        var disposed = JsonDocument.Parse("""{"a":{"b":1}}""");
        var element = disposed.RootElement;
        disposed.Dispose();

        Assert.Throws<ObjectDisposedException>(() => CanonicalJson.Serialize(element));

        using var document = JsonDocument.Parse("""{"y":2,"x":1}""");
        Assert.Equal("""{"x":1,"y":2}""", Encoding.UTF8.GetString(CanonicalJson.Serialize(document.RootElement)));
    }

    [Fact]
    public void The_event_mac_covers_each_field_length_prefixed_as_documented_even_past_its_first_buffer()
    {
        var key = RandomNumberGenerator.GetBytes(32);
        var eventId = Guid.Parse("0193a5e2-7c1d-7b3e-8f00-123456789abc");
        var actor = new string('k', 3_000); // longer than the buffer the MAC's input starts with
        var details = """{"a":1}"""u8.ToArray();

        var mac = AuditKeys.EventMac(key, "tenant-1", eventId, 1_733_000_000_123_456, actor, "tools.invoke.completed",
            "mcp_tool", "tool-9", correlationId: null, details);

        var input = new List<byte>();
        void Field(byte[]? value)
        {
            var length = new byte[4];
            BinaryPrimitives.WriteInt32BigEndian(length, value?.Length ?? -1);
            input.AddRange(length);
            if (value is not null) input.AddRange(value);
        }
        var micros = new byte[8];
        BinaryPrimitives.WriteInt64BigEndian(micros, 1_733_000_000_123_456);
        Field(Encoding.UTF8.GetBytes("tenant-1"));
        Field(eventId.ToByteArray(bigEndian: true));
        Field(micros);
        Field(Encoding.UTF8.GetBytes(actor));
        Field(Encoding.UTF8.GetBytes("tools.invoke.completed"));
        Field(Encoding.UTF8.GetBytes("mcp_tool"));
        Field(Encoding.UTF8.GetBytes("tool-9"));
        Field(null);
        Field(details);
        Assert.Equal(HMACSHA256.HashData(key, input.ToArray()), mac);
    }
}
