using System.Globalization;
using System.Text.Json;
using Dapper;
using Integrations.Common;
using Integrations.Features.Connectors;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Workers;
using MediatR;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Integrations.Features.Notifications;

/// <summary>
/// Delivers new and escalated incidents to the connections the tenant's rules route them to. Each state change of an
/// incident ('opened'; 'escalated:10', ':100', ':1000' as it recurs) is claimed once per connection (a unique row, so
/// replicas never send it twice), then sent as the connection's action — <c>deliver</c> for a webhook,
/// <c>post_message</c> for Slack, <c>send_email</c> for SMTP — through the mediator as a governed call of the tenant's system caller: policy, rate
/// limits, the vault, the audit trail and the invocation record apply as to any call. The outcome is written back to the
/// claim (<c>GET /notifications/deliveries</c>); a failed delivery is not retried here (the webhook connector retries
/// itself) and never touches the incident.
/// </summary>
public sealed class IncidentNotifier(
    IServiceScopeFactory scopes, NpgsqlDataSource dataSource, IConfiguration configuration, WorkerRegistry workers, ILogger<IncidentNotifier> logger)
    : BackgroundService
{
    public const string Actor = "system:incident-notifier";
    public const string WorkerName = "notifications.incidents";

    private const string ClaimSql = """
        INSERT INTO notification_deliveries (id, tenant_id, incident_id, state_change, connection_id, outcome) VALUES ($2, $1, $3, $4, $5, 'sending')
        ON CONFLICT DO NOTHING
        """;

    private const string FinishSql = """
        UPDATE notification_deliveries SET outcome = $3, error_code = $4, error = $5, invocation_id = $6, finished_at = now()
        WHERE tenant_id = $1 AND id = $2
        """;

    private TimeSpan Interval => configuration.GetValue("Integrations:Notifications:Interval", TimeSpan.FromSeconds(10));

    /// <summary>The link each notification carries, <c>{id}</c> replaced by the incident's id.</summary>
    private string LinkTemplate => configuration.GetValue("Integrations:Notifications:IncidentLink", "/incidents?status=open#{id}")!;

    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        workers.RunEveryAsync(WorkerName, "Delivers new and escalated incidents to the connections each tenant's notification rules name.", Interval,
            async ct => $"{await RunOnceAsync(ct)} notifications sent", stoppingToken);

    private sealed class Due
    {
        public required string TenantId { get; init; }
        public Guid IncidentId { get; init; }
        public required string StateChange { get; init; }
        public Guid ConnectionId { get; init; }
        public required string Connector { get; init; }
        public string? Channel { get; init; }
        public required string Kind { get; init; }
        public required string Severity { get; init; }
        public required string SubjectType { get; init; }
        public required string SubjectId { get; init; }
        public required string Message { get; init; }
        public int Occurrences { get; init; }
        public DateTimeOffset FirstSeen { get; init; }
    }

    /// <summary>One pass over what is due; answers how many notifications were sent (delivered or not).</summary>
    public async Task<int> RunOnceAsync(CancellationToken ct)
    {
        List<Due> due;
        await using (var connection = await dataSource.OpenConnectionAsync(ct))
        {
            due = (await connection.QueryAsync<Due>(new CommandDefinition("SELECT * FROM incident_notifications_due(200)", cancellationToken: ct))).AsList();
        }
        var sent = 0;
        foreach (var notification in due)
        {
            var claim = Ids.New();
            if (await WriteAsync(notification.TenantId, ClaimSql, ct, claim, notification.IncidentId, notification.StateChange, notification.ConnectionId) == 0) continue;
            var (outcome, error, invocation) = await SendAsync(notification, ct);
            await WriteAsync(notification.TenantId, FinishSql, CancellationToken.None, claim, outcome,
                (object?)error?.Code ?? DBNull.Value, (object?)error?.Detail ?? DBNull.Value, (object?)invocation ?? DBNull.Value);
            sent++;
        }
        return sent;
    }

    private async Task<(string Outcome, Error? Error, Guid? InvocationId)> SendAsync(Due notification, CancellationToken ct)
    {
        var connector = notification.Connector;
        var arguments = connector switch
        {
            "slack" => JsonSerializer.SerializeToElement(new { channel = notification.Channel ?? await DefaultAsync(notification, "default_channel", ct) ?? "", text = Text(notification) }),
            "smtp" => JsonSerializer.SerializeToElement(new
            {
                to = notification.Channel is { } to ? [to] : JsonSerializer.Deserialize<string[]>(await DefaultAsync(notification, "default_to", ct) ?? "[]") ?? [],
                subject = Headline(notification) is { Length: > 200 } headline ? headline[..199] + "…" : Headline(notification),
                text = Letter(notification),
            }),
            _ => JsonSerializer.SerializeToElement(new
            {
                @event = notification.StateChange == "opened" ? "incident.opened" : "incident.escalated",
                payload = new
                {
                    incident_id = notification.IncidentId,
                    state_change = notification.StateChange,
                    kind = notification.Kind,
                    severity = notification.Severity,
                    subject_type = notification.SubjectType,
                    subject_id = notification.SubjectId,
                    message = notification.Message,
                    occurrences = notification.Occurrences,
                    first_seen = notification.FirstSeen,
                    link = Link(notification),
                    text = Text(notification),
                },
            }),
        };
        var action = Notifications.Channels.GetValueOrDefault(connector, "deliver");
        await using var scope = scopes.CreateAsyncScope();
        scope.ServiceProvider.GetRequiredService<CallerContext>()
            .Set(new Caller(notification.TenantId, Actor, new HashSet<string> { Scopes.Invoke }, IsSystem: true));
        try
        {
            var result = await scope.ServiceProvider.GetRequiredService<IMediator>()
                .Send(new InvokeConnection.Command(notification.ConnectionId, action, arguments, $"incident:{notification.IncidentId}"), ct);
            if (result.IsSuccess) return ("delivered", null, result.Value.InvocationId);
            var invocation = result.Error!.Extensions?.GetValueOrDefault("invocation_id") as Guid?;
            logger.LogWarning("Notifying connection {ConnectionId} of incident {IncidentId} failed: {Code}", notification.ConnectionId, notification.IncidentId, result.Error.Code);
            return ("failed", result.Error, invocation);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            logger.LogError(e, "Notifying connection {ConnectionId} of incident {IncidentId} ended with an unexpected error.", notification.ConnectionId, notification.IncidentId);
            return ("failed", new Error("internal_error", 500, "Internal error.", "The notification ended with an unexpected error."), null);
        }
    }

    /// <summary>A setting of the connection where the rule names no destination: Slack's default_channel, SMTP's default_to (as JSON text).</summary>
    private async Task<string?> DefaultAsync(Due notification, string setting, CancellationToken ct)
    {
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        await using var batch = TenantSession.Batch(connection, notification.TenantId);
        batch.BatchCommands.Add(new NpgsqlBatchCommand("SELECT configuration->>$3 FROM connections WHERE tenant_id = $1 AND id = $2")
        {
            Parameters = { new() { Value = notification.TenantId }, new() { Value = notification.ConnectionId }, new() { Value = setting } },
        });
        await using var reader = await batch.ExecuteReaderAsync(ct);
        await reader.NextResultAsync(ct);
        return await reader.ReadAsync(ct) && !reader.IsDBNull(0) ? reader.GetString(0) : null;
    }

    private string Link(Due notification) => LinkTemplate.Replace("{id}", notification.IncidentId.ToString(), StringComparison.Ordinal);

    private string Text(Due notification) => $"{Headline(notification)} — {Link(notification)}";

    private static string Headline(Due notification)
    {
        var change = notification.StateChange == "opened"
            ? "New incident"
            : $"Incident escalated ({notification.Occurrences.ToString(CultureInfo.InvariantCulture)} occurrences)";
        return $"{change} [{notification.Severity}] {notification.Kind}: {notification.Message}";
    }

    /// <summary>An e-mail's body: the headline, then each fact on its own line, then the link.</summary>
    private string Letter(Due notification) => string.Join("\n",
        Headline(notification),
        "",
        $"Incident:    {notification.IncidentId}",
        $"Kind:        {notification.Kind}",
        $"Severity:    {notification.Severity}",
        $"Subject:     {notification.SubjectType} {notification.SubjectId}",
        $"Occurrences: {notification.Occurrences.ToString(CultureInfo.InvariantCulture)}",
        $"First seen:  {notification.FirstSeen.ToString("u", CultureInfo.InvariantCulture)}",
        "",
        Link(notification));

    private async Task<int> WriteAsync(string tenantId, string sql, CancellationToken ct, params object[] values)
    {
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        await using var batch = TenantSession.Batch(connection, tenantId);
        var command = new NpgsqlBatchCommand(sql);
        command.Parameters.Add(new NpgsqlParameter { Value = tenantId });
        foreach (var value in values) command.Parameters.Add(new NpgsqlParameter { Value = value });
        batch.BatchCommands.Add(command);
        await batch.ExecuteNonQueryAsync(ct);
        return command.RecordsAffected;
    }
}
