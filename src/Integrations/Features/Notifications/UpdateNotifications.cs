using Dapper;
using FluentValidation;
using Integrations.Common;
using Integrations.Features.Incidents;
using Integrations.Features.Policies;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.Notifications;

/// <summary>
/// notifications.update: replaces the tenant's incident routing rules. Each names a live webhook, Slack or SMTP connection;
/// from then on, new incidents and escalations that match a rule are delivered to it by the <see cref="IncidentNotifier"/>.
/// </summary>
public static class UpdateNotifications
{
    public const int MaxRules = 20;

    public sealed record Command(IReadOnlyList<NotificationRule> Rules) : IOperation<Notifications.Response>, IAudited
    {
        public static string Operation => "notifications.update";
        public static string Scope => Scopes.Write;
    }

    internal sealed class Validator : AbstractValidator<Command>
    {
        public Validator()
        {
            RuleFor(x => x.Rules).NotNull().Must(r => r is null || r.Count <= MaxRules).WithMessage($"At most {MaxRules} rules.");
            RuleForEach(x => x.Rules).ChildRules(rule =>
            {
                rule.RuleFor(r => r.MinSeverity).Must(RiskLevels.IsValid).WithMessage($"Severity is one of: {string.Join(", ", RiskLevels.All)}.");
                rule.RuleForEach(r => r.Kinds).Must(k => Incident.Kinds.Contains(k)).WithMessage($"Kinds are among: {string.Join(", ", Incident.Kinds)}.");
                rule.RuleFor(r => r.Channel).MaximumLength(200);
            });
        }
    }

    internal sealed class Handler(TenantSession session, AuditTrail audit) : IRequestHandler<Command, Result<Notifications.Response>>
    {
        private const string ConnectorsSql = """
            SELECT id, connector, configuration ? 'default_to' AS has_default_to FROM connections
            WHERE tenant_id = @TenantId AND id = ANY(@Ids) AND deleted_at IS NULL
            """;

        private const string InsertSql = """
            INSERT INTO notification_rules (tenant_id, position, connection_id, kinds, min_severity, channel)
            VALUES (@TenantId, @Position, @ConnectionId, @Kinds, @MinSeverity, @Channel)
            """;

        public async Task<Result<Notifications.Response>> Handle(Command request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var connectors = (await connection.QueryAsync<(Guid Id, string Connector, bool HasDefaultTo)>(new CommandDefinition(ConnectorsSql,
                new { session.TenantId, Ids = request.Rules.Select(r => r.ConnectionId).Distinct().ToArray() }, cancellationToken: ct)))
                .ToDictionary(c => c.Id);
            var errors = new Dictionary<string, string[]>();
            for (var i = 0; i < request.Rules.Count; i++)
            {
                var rule = request.Rules[i];
                if (!connectors.TryGetValue(rule.ConnectionId, out var target))
                {
                    errors[$"rules[{i}].connection_id"] = ["No live connection of this tenant has this id."];
                }
                else if (!Notifications.Channels.ContainsKey(target.Connector))
                {
                    errors[$"rules[{i}].connection_id"] = [$"Incidents can be routed to {string.Join(", ", Notifications.Channels.Keys)} connections, not {target.Connector}."];
                }
                else if (target.Connector == "smtp" && rule.Channel is null && !target.HasDefaultTo)
                {
                    errors[$"rules[{i}].channel"] = ["An SMTP connection without default_to needs the recipient address here."];
                }
                else if (target.Connector == "smtp" && rule.Channel is { } to && !(MimeKit.MailboxAddress.TryParse(to, out var mailbox) && mailbox.Address.Contains('@', StringComparison.Ordinal)))
                {
                    errors[$"rules[{i}].channel"] = ["For an SMTP connection, the recipient's e-mail address."];
                }
            }
            if (errors.Count > 0) return Error.Validation(errors);

            await connection.ExecuteAsync(new CommandDefinition("DELETE FROM notification_rules WHERE tenant_id = @TenantId", new { session.TenantId }, cancellationToken: ct));
            var rules = request.Rules.Select(r => r with { Kinds = r.Kinds ?? [] }).ToList();
            for (var i = 0; i < rules.Count; i++)
            {
                await connection.ExecuteAsync(new CommandDefinition(InsertSql, new
                {
                    session.TenantId,
                    Position = i,
                    rules[i].ConnectionId,
                    Kinds = rules[i].Kinds!.ToArray(),
                    rules[i].MinSeverity,
                    rules[i].Channel,
                }, cancellationToken: ct));
            }
            audit.Record(Notifications.SubjectType, session.TenantId, new { Rules = rules });
            return new Notifications.Response(rules);
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPut("/", async (Command command, IMediator mediator, HttpContext http) =>
                (await mediator.Send(command, http.RequestAborted)).ToHttp(http))
            .WithName(Command.Operation)
            .WithSummary("Replace the incident routing rules: new and escalated incidents (by kind and severity) go to webhook, Slack or SMTP connections.")
            .Produces<Notifications.Response>()
            .ProducesValidationProblem();
}
