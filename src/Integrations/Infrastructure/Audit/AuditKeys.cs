using System.Buffers;
using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using Integrations.Infrastructure.Vault;

namespace Integrations.Infrastructure.Audit;

/// <summary>
/// The audit trail's keys, derived from the vault's master keys with HKDF-SHA256 and a purpose label each: one signs
/// events (the MAC stored with each), one signs chain-head anchors. A key's id is the id of the master key it comes
/// from, so after a master-key rotation events and anchors made under the old key verify as long as that key stays
/// listed under <c>Integrations:Vault:PreviousKeys</c>. Neither key nor master key is ever sent to PostgreSQL.
/// </summary>
public sealed class AuditKeys
{
    private static readonly byte[] EventLabel = "integrations.audit.event-mac.v1"u8.ToArray();
    private static readonly byte[] AnchorLabel = "integrations.audit.anchor-mac.v1"u8.ToArray();

    private static readonly AsyncLocal<AuditKeys?> Ambient = new();

    [ThreadStatic] private static IncrementalHash? _hmac;
    [ThreadStatic] private static byte[]? _hmacKey;

    private readonly Dictionary<string, (byte[] Event, byte[] Anchor)> _byId = new(StringComparer.Ordinal);

    public AuditKeys(MasterKeys masterKeys)
    {
        foreach (var id in masterKeys.KeyIds)
        {
            masterKeys.TryGet(id, out var master);
            _byId[id] = (Derive(master, EventLabel), Derive(master, AnchorLabel));
        }
        CurrentKeyId = masterKeys.Current.Id;
        CurrentEventKey = _byId[CurrentKeyId].Event;
    }

    /// <summary>The id of the key new events and anchors are signed with.</summary>
    public string CurrentKeyId { get; }

    internal byte[] CurrentEventKey { get; }

    internal bool TryGetEventKey(string keyId, out byte[] key)
    {
        var found = _byId.TryGetValue(keyId, out var keys);
        key = keys.Event;
        return found;
    }

    internal bool TryGetAnchorKey(string keyId, out byte[] key)
    {
        var found = _byId.TryGetValue(keyId, out var keys);
        key = keys.Anchor;
        return found;
    }

    /// <summary>
    /// Makes these the keys that <see cref="AuditWrite"/>s created in the current asynchronous flow are signed with,
    /// until the result is disposed. The mediator pipeline does this for every request (<c>AuditKeysBehavior</c>), so
    /// <see cref="AuditTrail"/>'s static methods sign events without a key in their signatures.
    /// </summary>
    public static IDisposable Use(AuditKeys keys)
    {
        var before = Ambient.Value;
        Ambient.Value = keys;
        return new Restore(before);
    }

    internal static AuditKeys Current => Ambient.Value ?? throw new InvalidOperationException(
        "Audit events are signed with the audit key: write them inside a mediator request or within AuditKeys.Use(...).");

    private static byte[] Derive(MasterKey master, byte[] label) =>
        HKDF.DeriveKey(HashAlgorithmName.SHA256, master.Bytes.ToArray(), 32, salt: [], info: label);

    /// <summary>
    /// HMAC-SHA256 over an event's content, each field length-prefixed (a null correlation id has length -1), so no
    /// two different events have the same input. <paramref name="occurredAtMicros"/> is microseconds since the Unix
    /// epoch (PostgreSQL's precision); <paramref name="canonicalDetails"/> is the details' canonical JSON
    /// (<see cref="Common.CanonicalJson"/> with numbers normalized).
    /// </summary>
    internal static byte[] EventMac(
        byte[] key, string tenantId, Guid eventId, long occurredAtMicros, string actor, string action, string subjectType,
        string subjectId, string? correlationId, ReadOnlySpan<byte> canonicalDetails)
    {
        var buffer = new MacInput(256 + canonicalDetails.Length);
        try
        {
            buffer.Add(tenantId);
            Span<byte> id = stackalloc byte[16];
            eventId.TryWriteBytes(id, bigEndian: true, out _);
            buffer.Add(id);
            Span<byte> micros = stackalloc byte[8];
            BinaryPrimitives.WriteInt64BigEndian(micros, occurredAtMicros);
            buffer.Add(micros);
            buffer.Add(actor);
            buffer.Add(action);
            buffer.Add(subjectType);
            buffer.Add(subjectId);
            buffer.Add(correlationId);
            buffer.Add(canonicalDetails);
            return Hmac(key, buffer.Written);
        }
        finally
        {
            buffer.Return();
        }
    }

    /// <summary>HMAC-SHA256 over an anchor's fields, length-prefixed as <see cref="EventMac"/>'s are.</summary>
    internal static byte[] AnchorMac(byte[] key, string tenantId, long seq, ReadOnlySpan<byte> hash, long anchoredAtMicros)
    {
        var buffer = new MacInput(128);
        try
        {
            buffer.Add(tenantId);
            Span<byte> number = stackalloc byte[8];
            BinaryPrimitives.WriteInt64BigEndian(number, seq);
            buffer.Add(number);
            buffer.Add(hash);
            BinaryPrimitives.WriteInt64BigEndian(number, anchoredAtMicros);
            buffer.Add(number);
            return Hmac(key, buffer.Written);
        }
        finally
        {
            buffer.Return();
        }
    }

    /// <summary>
    /// HMAC-SHA256 with this thread's HMAC for <paramref name="key"/>: reset after each MAC instead of set up again (the
    /// key's padded blocks hashed, a new context), which halves a MAC's cost; a governed call makes four.
    /// </summary>
    private static byte[] Hmac(byte[] key, ReadOnlySpan<byte> input)
    {
        var hmac = _hmac;
        if (hmac is null || !ReferenceEquals(_hmacKey, key))
        {
            hmac?.Dispose();
            _hmac = null;
            hmac = IncrementalHash.CreateHMAC(HashAlgorithmName.SHA256, key);
            _hmacKey = key;
            _hmac = hmac;
        }
        try
        {
            hmac.AppendData(input);
            return hmac.GetHashAndReset();
        }
        catch
        {
            _hmac = null; // never reuse one left mid-hash
            hmac.Dispose();
            throw;
        }
    }

    private sealed class Restore(AuditKeys? before) : IDisposable
    {
        public void Dispose() => Ambient.Value = before;
    }

    /// <summary>The MAC's input, in a rented array (given back by <see cref="Return"/>).</summary>
    private struct MacInput(int capacity)
    {
        private byte[] _bytes = ArrayPool<byte>.Shared.Rent(capacity);
        private int _length;

        public readonly ReadOnlySpan<byte> Written => _bytes.AsSpan(0, _length);

        public void Add(string? value)
        {
            if (value is null)
            {
                Length(-1);
                return;
            }
            var count = Encoding.UTF8.GetByteCount(value);
            Length(count);
            Ensure(count);
            _length += Encoding.UTF8.GetBytes(value, _bytes.AsSpan(_length));
        }

        public void Add(ReadOnlySpan<byte> value)
        {
            Length(value.Length);
            Ensure(value.Length);
            value.CopyTo(_bytes.AsSpan(_length));
            _length += value.Length;
        }

        public readonly void Return() => ArrayPool<byte>.Shared.Return(_bytes);

        private void Length(int length)
        {
            Ensure(4);
            BinaryPrimitives.WriteInt32BigEndian(_bytes.AsSpan(_length), length);
            _length += 4;
        }

        private void Ensure(int more)
        {
            if (_length + more <= _bytes.Length) return;
            var larger = ArrayPool<byte>.Shared.Rent(Math.Max(_bytes.Length * 2, _length + more));
            _bytes.AsSpan(0, _length).CopyTo(larger);
            ArrayPool<byte>.Shared.Return(_bytes);
            _bytes = larger;
        }
    }
}
