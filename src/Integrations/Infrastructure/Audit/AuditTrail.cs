using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Integrations.Common;
using Integrations.Infrastructure.Database;
using Npgsql;
using NpgsqlTypes;

namespace Integrations.Infrastructure.Audit;

public sealed record AuditEvent(string Action, string SubjectType, string SubjectId, object? Details);

/// <summary>
/// The audit events one write appends, with who is acting and the correlation id they share (the current trace id
/// when none is given). Both, the events' details as canonical JSON, an id and a time per event and each event's MAC
/// (under the current audit key, <see cref="AuditKeys"/>) are made when this is created, on the caller's thread, so
/// a tenant's batch (<see cref="TenantBatches"/>) only sends them.
/// </summary>
public sealed record AuditWrite(Caller Caller, IReadOnlyList<AuditEvent> Events, string? CorrelationId = null)
{
    public string? CorrelationId { get; } = CorrelationId ?? Activity.Current?.TraceId.ToString();

    internal Signed Signature { get; } = Signed.Of(Caller, Events, CorrelationId ?? Activity.Current?.TraceId.ToString());

    /// <summary>The events' details as canonical JSON, as they are stored and as their MACs cover them.</summary>
    internal string[] DetailsJson => Signature.DetailsJson;

    /// <summary>What <see cref="AuditTrail.AddTo(NpgsqlBatch, string, IReadOnlyList{AuditWrite})"/> sends per event besides the event itself.</summary>
    internal sealed record Signed(string[] DetailsJson, Guid[] EventIds, DateTime OccurredAt, string KeyId, byte[][] Macs)
    {
        private static readonly object NoDetails = new { };

        public static Signed Of(Caller caller, IReadOnlyList<AuditEvent> events, string? correlationId)
        {
            var keys = AuditKeys.Current;
            // PostgreSQL keeps microseconds: the MAC covers the time as it will be read back.
            var now = DateTime.UtcNow;
            var occurredAt = new DateTime(now.Ticks - now.Ticks % 10, DateTimeKind.Utc);
            var micros = AuditTrail.Micros(occurredAt);
            var details = new string[events.Count];
            var ids = new Guid[events.Count];
            var macs = new byte[events.Count][];
            for (var i = 0; i < events.Count; i++)
            {
                var e = events[i];
                using var document = JsonSerializer.SerializeToDocument(e.Details ?? NoDetails, AuditJson.Options);
                var canonical = CanonicalJson.Transient(document.RootElement, normalizeNumbers: true);
                details[i] = Encoding.UTF8.GetString(canonical);
                ids[i] = Guid.CreateVersion7();
                macs[i] = AuditKeys.EventMac(keys.CurrentEventKey, caller.TenantId, ids[i], micros, caller.Actor, e.Action,
                    e.SubjectType, e.SubjectId, correlationId, canonical);
            }
            return new Signed(details, ids, occurredAt, keys.CurrentKeyId, macs);
        }
    }
}

/// <summary>
/// Collects the audit events of the current request; <see cref="AuditTrail.WriteAsync"/> appends them to the
/// tenant's hash chain inside the caller's transaction, so a change and its audit rows commit together.
/// </summary>
public sealed class AuditTrail(CallerContext caller)
{
    private readonly List<AuditEvent> _pending = [];

    /// <summary>Microseconds since the Unix epoch: an event's time as its MAC covers it.</summary>
    internal static long Micros(DateTime utc) => (utc.Ticks - DateTime.UnixEpoch.Ticks) / 10;

    public IReadOnlyList<AuditEvent> Pending => _pending;

    /// <summary>Records an event for the request's operation; <paramref name="action"/> defaults to the operation name.</summary>
    public void Record(string subjectType, string subjectId, object? details = null, string? action = null) =>
        _pending.Add(new AuditEvent(action ?? string.Empty, subjectType, subjectId, details));

    internal async Task FlushAsync(NpgsqlConnection connection, string operation, CancellationToken ct)
    {
        var events = _pending.Select(e => e.Action.Length == 0 ? e with { Action = operation } : e).ToList();
        _pending.Clear();
        await WriteAsync(connection, caller.Required, events, ct);
    }

    /// <summary>
    /// One statement per audit key, whatever the number of events and of writes they come from (migrations 0009, 0010
    /// and 0040). Its parameters are positional, so Npgsql sends the text as it is instead of parsing it each time.
    /// </summary>
    private const string AppendSql = "SELECT audit_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

    /// <summary>
    /// Appends events to the tenant's chain on <paramref name="connection"/>, in its current transaction, in one round trip.
    /// </summary>
    public static async Task WriteAsync(
        NpgsqlConnection connection, Caller caller, IReadOnlyList<AuditEvent> events, CancellationToken ct, string? correlationId = null)
    {
        if (events.Count == 0) return;
        await using var batch = new NpgsqlBatch(connection);
        AddTo(batch, caller, events, correlationId);
        await batch.ExecuteNonQueryAsync(ct);
    }

    /// <summary>
    /// Adds the statement that appends <paramref name="events"/>, in order, to the tenant's chain to <paramref name="batch"/>:
    /// the chain head is created if missing, locked and advanced once per event. The head row stays locked until the
    /// transaction ends, so a batch that commits as it ends (see <see cref="TenantSession.Batch"/>) holds it only while
    /// PostgreSQL runs the batch.
    /// </summary>
    public static void AddTo(NpgsqlBatch batch, Caller caller, IReadOnlyList<AuditEvent> events, string? correlationId = null)
    {
        if (events.Count == 0) return;
        AddTo(batch, caller.TenantId, [new AuditWrite(caller, events, correlationId)]);
    }

    /// <summary>
    /// Adds the statement that appends the events of every write in <paramref name="writes"/>, write after write, to
    /// the chain of <paramref name="tenantId"/>, each event with its own write's actor and correlation id: one statement
    /// per run of writes signed under the same key (always one, unless the audit key changed between two of them).
    /// </summary>
    public static void AddTo(NpgsqlBatch batch, string tenantId, IReadOnlyList<AuditWrite> writes)
    {
        var first = 0;
        for (var i = 1; i <= writes.Count; i++)
        {
            if (i < writes.Count && writes[i].Signature.KeyId == writes[first].Signature.KeyId) continue;
            AddAppend(batch, tenantId, writes, first, i);
            first = i;
        }
    }

    private static void AddAppend(NpgsqlBatch batch, string tenantId, IReadOnlyList<AuditWrite> writes, int from, int to)
    {
        var count = 0;
        for (var w = from; w < to; w++) count += writes[w].Events.Count;
        if (count == 0) return;
        var actors = new string[count];
        var correlations = new string?[count];
        var actions = new string[count];
        var subjectTypes = new string[count];
        var subjectIds = new string[count];
        var details = new string[count];
        var eventIds = new Guid[count];
        var occurredAt = new DateTime[count];
        var macs = new byte[count][];
        var i = 0;
        for (var w = from; w < to; w++)
        {
            var write = writes[w];
            if (write.Caller.TenantId != tenantId) throw new InvalidOperationException("An audit write was added to another tenant's chain.");
            for (var j = 0; j < write.Events.Count; j++, i++)
            {
                actors[i] = write.Caller.Actor;
                correlations[i] = write.CorrelationId;
                actions[i] = write.Events[j].Action;
                subjectTypes[i] = write.Events[j].SubjectType;
                subjectIds[i] = write.Events[j].SubjectId;
                details[i] = write.DetailsJson[j];
                eventIds[i] = write.Signature.EventIds[j];
                occurredAt[i] = write.Signature.OccurredAt;
                macs[i] = write.Signature.Macs[j];
            }
        }
        var append = new NpgsqlBatchCommand(AppendSql);
        var p = append.Parameters;
        p.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Text, Value = tenantId });
        p.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text, Value = actors });
        p.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text, Value = correlations });
        p.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text, Value = actions });
        p.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text, Value = subjectTypes });
        p.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text, Value = subjectIds });
        p.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Jsonb, Value = details });
        p.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Uuid, Value = eventIds });
        p.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.TimestampTz, Value = occurredAt });
        p.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Text, Value = writes[from].Signature.KeyId });
        p.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Bytea, Value = macs });
        batch.BatchCommands.Add(append);
    }
}

internal static class AuditJson
{
    public static readonly JsonSerializerOptions Options = new(JsonSerializerDefaults.Web)
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
    };
}
