using System.Diagnostics;
using System.Text.Json;
using Integrations.Common;
using Integrations.Infrastructure.Database;
using Npgsql;
using NpgsqlTypes;

namespace Integrations.Infrastructure.Audit;

public sealed record AuditEvent(string Action, string SubjectType, string SubjectId, object? Details);

/// <summary>
/// The audit events one write appends, with who is acting and the correlation id they share (the current trace id
/// when none is given). Both, and the events' details as JSON, are taken when this is created, on the caller's thread.
/// </summary>
public sealed record AuditWrite(Caller Caller, IReadOnlyList<AuditEvent> Events, string? CorrelationId = null)
{
    public string? CorrelationId { get; } = CorrelationId ?? Activity.Current?.TraceId.ToString();

    internal string[] DetailsJson { get; } = Events.Select(e => JsonSerializer.Serialize(e.Details ?? new { }, AuditJson.Options)).ToArray();
}

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
    /// One statement, whatever the number of events and of writes they come from (migrations 0009 and 0010). Its
    /// parameters are positional, so Npgsql sends the text as it is instead of parsing it on every execution.
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
        AddTo(batch, caller.TenantId, [new AuditWrite(caller, events, correlationId)]);
    }

    /// <summary>
    /// Adds one statement that appends the events of every write in <paramref name="writes"/>, write after write, to
    /// the chain of <paramref name="tenantId"/>, each event with its own write's actor and correlation id.
    /// </summary>
    public static void AddTo(NpgsqlBatch batch, string tenantId, IReadOnlyList<AuditWrite> writes)
    {
        var count = writes.Sum(w => w.Events.Count);
        if (count == 0) return;
        var actors = new string[count];
        var correlations = new string?[count];
        var actions = new string[count];
        var subjectTypes = new string[count];
        var subjectIds = new string[count];
        var details = new string[count];
        var i = 0;
        foreach (var write in writes)
        {
            if (write.Caller.TenantId != tenantId) throw new InvalidOperationException("An audit write was added to another tenant's chain.");
            for (var j = 0; j < write.Events.Count; j++, i++)
            {
                actors[i] = write.Caller.Actor;
                correlations[i] = write.CorrelationId;
                actions[i] = write.Events[j].Action;
                subjectTypes[i] = write.Events[j].SubjectType;
                subjectIds[i] = write.Events[j].SubjectId;
                details[i] = write.DetailsJson[j];
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
