namespace Integrations.Common;

/// <summary>
/// Row ids: UUIDv7, time-ordered, so <c>ORDER BY id DESC</c> is newest first and the id alone is the keyset. The
/// framework's UUIDv7 is random below the millisecond; ids made here are also strictly increasing within the process,
/// so rows created in the same millisecond still list in creation order.
/// </summary>
public static class Ids
{
    private static readonly Lock Gate = new();
    private static Guid _last;

    public static Guid New()
    {
        var candidate = Guid.CreateVersion7();
        lock (Gate)
        {
            if (candidate.CompareTo(_last) <= 0) candidate = After(_last);
            _last = candidate;
            return candidate;
        }
    }

    /// <summary>The next id after <paramref name="id"/>: its random tail (bytes 9-15, big-endian) plus one.</summary>
    private static Guid After(Guid id)
    {
        Span<byte> bytes = stackalloc byte[16];
        id.TryWriteBytes(bytes, bigEndian: true, out _);
        for (var i = 15; i >= 9 && ++bytes[i] == 0; i--)
        {
        }
        return new Guid(bytes, bigEndian: true);
    }
}
