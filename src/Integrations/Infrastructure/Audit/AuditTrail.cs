using System.Diagnostics;
using System.Text.Json;
using Integrations.Common;
using Integrations.Infrastructure.Database;
using Npgsql;
using NpgsqlTypes;

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

    /// <summary>
    /// One statement per write, whatever its number of events (migration 0009). Its parameters are positional, so
    /// Npgsql sends the text as it is instead of parsing it for named placeholders on every execution.
    /// </summary>
    private const string AppendSql = "SELECT audit_append($1, $2, $3, $4, $5, $6, $7)";

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
        correlationId ??= Activity.Current?.TraceId.ToString();
        var actions = new string[events.Count];
        var subjectTypes = new string[events.Count];
        var subjectIds = new string[events.Count];
        var details = new string[events.Count];
        for (var i = 0; i < events.Count; i++)
        {
            actions[i] = events[i].Action;
            subjectTypes[i] = events[i].SubjectType;
            subjectIds[i] = events[i].SubjectId;
            details[i] = JsonSerializer.Serialize(events[i].Details ?? new { }, AuditJson.Options);
        }
        var append = new NpgsqlBatchCommand(AppendSql);
        var p = append.Parameters;
        p.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Text, Value = caller.TenantId });
        p.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Text, Value = caller.Actor });
        p.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Text, Value = (object?)correlationId ?? DBNull.Value });
        p.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text, Value = actions });
        p.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text, Value = subjectTypes });
        p.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text, Value = subjectIds });
        p.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Jsonb, Value = details });
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
