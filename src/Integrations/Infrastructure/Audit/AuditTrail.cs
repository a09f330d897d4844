using System.Diagnostics;
using System.Text.Json;
using Dapper;
using Integrations.Common;
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

    private const string AppendSql = """
        INSERT INTO audit_chain_heads (tenant_id) VALUES (@TenantId) ON CONFLICT (tenant_id) DO NOTHING;
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

    /// <summary>Appends events to the tenant's chain on <paramref name="connection"/>, in its current transaction.</summary>
    public static async Task WriteAsync(
        NpgsqlConnection connection, Caller caller, IReadOnlyList<AuditEvent> events, CancellationToken ct, string? correlationId = null)
    {
        correlationId ??= Activity.Current?.TraceId.ToString();
        foreach (var e in events)
        {
            var args = new
            {
                caller.TenantId,
                caller.Actor,
                e.Action,
                e.SubjectType,
                e.SubjectId,
                CorrelationId = correlationId,
                Details = JsonSerializer.Serialize(e.Details ?? new { }, AuditJson.Options),
            };
            await connection.ExecuteAsync(new CommandDefinition(AppendSql, args, cancellationToken: ct));
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
