using System.Diagnostics;
using System.Text.Json;
using Integrations.Common;
using Integrations.Infrastructure.Database;
using Npgsql;

namespace Integrations.Infrastructure.Audit;

public sealed record AuditEvent(string Action, string SubjectType, string SubjectId, object? Details);

/// <summary>
/// Collects the audit events of the current request; <see cref="AuditTrail.WriteAsync"/> appends them to the
/// tenant's hash chain inside the caller's transaction, so a change and its audit rows commit together.
/// </summary>
public sealed class AuditTrail(CallerContext caller)
{
    private readonly List<AuditEvent> _pending = [];

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

    private const string EnsureHeadSql = "INSERT INTO audit_chain_heads (tenant_id) VALUES (@TenantId) ON CONFLICT (tenant_id) DO NOTHING";

    private const string AppendSql = """
        WITH head AS (
            UPDATE audit_chain_heads
            SET last_seq = last_seq + 1,
                prev_hash = last_hash,
                last_hash = audit_event_hash(last_hash, tenant_id, last_seq + 1, now(), @Actor, @Action,
                                             @SubjectType, @SubjectId, @CorrelationId, @Details::jsonb)
            WHERE tenant_id = @TenantId
            RETURNING last_seq, prev_hash, last_hash)
        INSERT INTO audit_events (tenant_id, seq, occurred_at, actor, action, subject_type, subject_id, correlation_id, details, prev_hash, hash)
        SELECT @TenantId, last_seq, now(), @Actor, @Action, @SubjectType, @SubjectId, @CorrelationId, @Details::jsonb, prev_hash, last_hash
        FROM head
        """;

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
    /// Adds the statements that append <paramref name="events"/>, in order, to the tenant's chain to <paramref name="batch"/>:
    /// the chain head is created if missing, then each event advances it. The head row stays locked from the first
    /// append until the transaction ends, so a batch that commits as it ends (see <see cref="TenantSession.Batch"/>)
    /// holds it only while PostgreSQL runs the batch.
    /// </summary>
    public static void AddTo(NpgsqlBatch batch, Caller caller, IReadOnlyList<AuditEvent> events, string? correlationId = null)
    {
        if (events.Count == 0) return;
        correlationId ??= Activity.Current?.TraceId.ToString();
        var ensure = new NpgsqlBatchCommand(EnsureHeadSql);
        ensure.Parameters.AddWithValue("TenantId", caller.TenantId);
        batch.BatchCommands.Add(ensure);
        foreach (var e in events)
        {
            var append = new NpgsqlBatchCommand(AppendSql);
            append.Parameters.AddWithValue("TenantId", caller.TenantId);
            append.Parameters.AddWithValue("Actor", caller.Actor);
            append.Parameters.AddWithValue("Action", e.Action);
            append.Parameters.AddWithValue("SubjectType", e.SubjectType);
            append.Parameters.AddWithValue("SubjectId", e.SubjectId);
            append.Parameters.AddWithValue("CorrelationId", NpgsqlTypes.NpgsqlDbType.Text, (object?)correlationId ?? DBNull.Value);
            append.Parameters.AddWithValue("Details", JsonSerializer.Serialize(e.Details ?? new { }, AuditJson.Options));
            batch.BatchCommands.Add(append);
        }
    }
}

internal static class AuditJson
{
    public static readonly JsonSerializerOptions Options = new(JsonSerializerDefaults.Web)
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
    };
}
