namespace Integrations.Features.Notifications;

/// <summary>A routing rule: new and escalated incidents of these kinds (all when empty), at least this severe, go to the connection.</summary>
/// <param name="Channel">For a Slack connection: the channel (else the connection's <c>default_channel</c>); for an SMTP connection: the recipient address (else the connection's <c>default_to</c>).</param>
public sealed record NotificationRule(Guid ConnectionId, IReadOnlyList<string>? Kinds = null, string MinSeverity = "low", string? Channel = null);

public static class Notifications
{
    public const string SubjectType = "notification_rules";

    /// <summary>The connectors an incident can be routed to, and the action each is sent through.</summary>
    public static readonly IReadOnlyDictionary<string, string> Channels = new Dictionary<string, string>
    {
        ["webhook"] = "deliver",
        ["slack"] = "post_message",
        ["smtp"] = "send_email",
    };

    public sealed record Response(IReadOnlyList<NotificationRule> Rules);

    internal sealed class Row
    {
        public Guid ConnectionId { get; init; }
        public string[] Kinds { get; init; } = [];
        public required string MinSeverity { get; init; }
        public string? Channel { get; init; }

        public NotificationRule ToRule() => new(ConnectionId, Kinds, MinSeverity, Channel);
    }

    internal const string RulesSql = "SELECT connection_id, kinds, min_severity, channel FROM notification_rules WHERE tenant_id = @TenantId ORDER BY position";
}
