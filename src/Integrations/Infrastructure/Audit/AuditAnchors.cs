using System.Text;
using System.Text.Json;
using Dapper;
using Integrations.Infrastructure.Workers;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Integrations.Infrastructure.Audit;

/// <summary>
/// A tenant's chain head as it was at <see cref="AnchoredAt"/>, signed with the anchor key of <see cref="KeyId"/>.
/// Whoever rewrites the chain in PostgreSQL, even recomputing every hash, changes the hash at <see cref="Seq"/> or
/// removes the event, and <c>audit.verify</c> sees that against the anchor.
/// </summary>
public sealed record AuditAnchor(string TenantId, long Seq, byte[] Hash, DateTime AnchoredAt, string KeyId, byte[] Mac);

/// <summary>
/// Where anchors are kept: one JSON line each, appended (and flushed to disk) to a file outside the database,
/// <c>Integrations:Audit:AnchorFile</c> (default <c>.data/audit-anchors.jsonl</c> under the content root). Replicas may
/// share the file (each line is one append). It is only as safe as its storage: the database's owner must not be able
/// to write it (an object store with retention, through the connectors, is later work).
/// </summary>
public sealed class AuditAnchorFile(string path, AuditKeys keys)
{
    public const string PathKey = "Integrations:Audit:AnchorFile";

    private readonly Lock _gate = new();

    public string Path { get; } = System.IO.Path.GetFullPath(path);

    public static string FromConfiguration(IConfiguration configuration, IHostEnvironment? environment) =>
        configuration[PathKey] is { Length: > 0 } configured
            ? configured
            : System.IO.Path.Combine(environment?.ContentRootPath ?? Directory.GetCurrentDirectory(), ".data", "audit-anchors.jsonl");

    /// <summary>Signs and appends an anchor per head, all in one write that is flushed to disk before this returns.</summary>
    public IReadOnlyList<AuditAnchor> Append(IEnumerable<(string TenantId, long Seq, byte[] Hash)> heads)
    {
        var now = DateTime.UtcNow;
        var anchoredAt = new DateTime(now.Ticks - now.Ticks % 10, DateTimeKind.Utc);
        if (!keys.TryGetAnchorKey(keys.CurrentKeyId, out var key)) throw new InvalidOperationException("The current audit key is missing.");
        var anchors = heads.Select(h => new AuditAnchor(h.TenantId, h.Seq, h.Hash, anchoredAt, keys.CurrentKeyId,
            AuditKeys.AnchorMac(key, h.TenantId, h.Seq, h.Hash, AuditTrail.Micros(anchoredAt)))).ToList();
        if (anchors.Count == 0) return anchors;

        var text = new StringBuilder();
        foreach (var anchor in anchors) text.Append(JsonSerializer.Serialize(Line.Of(anchor), LineJson)).Append('\n');
        var bytes = Encoding.UTF8.GetBytes(text.ToString());
        lock (_gate)
        {
            Directory.CreateDirectory(System.IO.Path.GetDirectoryName(Path)!);
            var options = new FileStreamOptions { Mode = FileMode.Append, Access = FileAccess.Write, Share = FileShare.ReadWrite };
            if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            using var stream = new FileStream(Path, options);
            stream.Write(bytes);
            stream.Flush(flushToDisk: true);
        }
        return anchors;
    }

    /// <summary>
    /// The tenant's anchors in the order they were written, each with whether its signature holds under a key this
    /// service has. A line that is not an anchor (a torn last line) is skipped.
    /// </summary>
    public IReadOnlyList<(AuditAnchor Anchor, bool Signed)> Read(string tenantId)
    {
        var found = new List<(AuditAnchor, bool)>();
        if (!File.Exists(Path)) return found;
        using var reader = new StreamReader(new FileStream(Path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete), Encoding.UTF8);
        // A cheap filter before parsing: the tenant id as the line writes it.
        var marker = "\"tenant_id\":" + JsonSerializer.Serialize(tenantId, LineJson) + ",";
        while (reader.ReadLine() is { } text)
        {
            if (!text.Contains(marker, StringComparison.Ordinal)) continue;
            Line? line;
            try
            {
                line = JsonSerializer.Deserialize<Line>(text, LineJson);
            }
            catch (JsonException)
            {
                continue;
            }
            if (line?.ToAnchor() is not { } anchor || anchor.TenantId != tenantId) continue;
            found.Add((anchor, SignatureHolds(anchor)));
        }
        return found;
    }

    /// <summary>The last anchored sequence number of every tenant in the file.</summary>
    public Dictionary<string, long> LastAnchoredSeqs()
    {
        var last = new Dictionary<string, long>(StringComparer.Ordinal);
        if (!File.Exists(Path)) return last;
        foreach (var text in File.ReadLines(Path))
        {
            try
            {
                if (JsonSerializer.Deserialize<Line>(text, LineJson)?.ToAnchor() is { } anchor && SignatureHolds(anchor))
                {
                    last[anchor.TenantId] = Math.Max(last.GetValueOrDefault(anchor.TenantId), anchor.Seq);
                }
            }
            catch (JsonException)
            {
            }
        }
        return last;
    }

    private bool SignatureHolds(AuditAnchor anchor) =>
        keys.TryGetAnchorKey(anchor.KeyId, out var key)
        && System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(
            AuditKeys.AnchorMac(key, anchor.TenantId, anchor.Seq, anchor.Hash, AuditTrail.Micros(anchor.AnchoredAt)), anchor.Mac);

    private static readonly JsonSerializerOptions LineJson = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    private sealed record Line(
        string? TenantId, long Seq, string? Hash, DateTime AnchoredAt, string? KeyId, string? Mac)
    {
        public static Line Of(AuditAnchor a) =>
            new(a.TenantId, a.Seq, Convert.ToHexStringLower(a.Hash), a.AnchoredAt, a.KeyId, Convert.ToHexStringLower(a.Mac));

        public AuditAnchor? ToAnchor()
        {
            if (TenantId is null || Hash is null || KeyId is null || Mac is null) return null;
            try
            {
                return new AuditAnchor(TenantId, Seq, Convert.FromHexString(Hash), AnchoredAt.ToUniversalTime(), KeyId, Convert.FromHexString(Mac));
            }
            catch (FormatException)
            {
                return null;
            }
        }
    }
}

/// <summary>
/// Anchors every tenant's chain head that moved since its last anchor, every <c>Integrations:Audit:AnchorInterval</c>
/// (default 5 minutes; <c>00:00:00</c> turns it off). Events after a tenant's last anchor are protected by their MACs
/// and the chain only.
/// </summary>
public sealed class AuditAnchoring(
    NpgsqlDataSource dataSource, AuditAnchorFile file, IConfiguration configuration, WorkerRegistry workers, ILogger<AuditAnchoring> logger)
    : BackgroundService
{
    public const string IntervalKey = "Integrations:Audit:AnchorInterval";
    public const string WorkerName = "audit.anchoring";

    private Dictionary<string, long>? _lastAnchored;

    /// <summary>One pass; answers the anchors written.</summary>
    public async Task<IReadOnlyList<AuditAnchor>> RunOnceAsync(CancellationToken ct)
    {
        List<Head> heads;
        await using (var connection = await dataSource.OpenConnectionAsync(ct))
        {
            heads = (await connection.QueryAsync<Head>(new CommandDefinition(
                "SELECT tenant_id, last_seq, last_hash FROM audit_chain_heads_for_anchoring()", cancellationToken: ct))).AsList();
        }
        _lastAnchored ??= file.LastAnchoredSeqs();
        var moved = heads.Where(h => h.LastSeq > _lastAnchored.GetValueOrDefault(h.TenantId)).ToList();
        var written = file.Append(moved.Select(h => (h.TenantId, h.LastSeq, h.LastHash)));
        foreach (var anchor in written) _lastAnchored[anchor.TenantId] = anchor.Seq;
        return written;
    }

    private sealed record Head(string TenantId, long LastSeq, byte[] LastHash);

    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        workers.RunEveryAsync(WorkerName, "Anchors every tenant's audit chain head that moved since its last anchor.",
            configuration.GetValue(IntervalKey, TimeSpan.FromMinutes(5)), async ct =>
            {
                var written = await RunOnceAsync(ct);
                if (written.Count > 0) logger.LogInformation("Anchored {Count} audit chain heads in {Path}", written.Count, file.Path);
                return $"{written.Count} chain heads anchored";
            }, stoppingToken);
}
