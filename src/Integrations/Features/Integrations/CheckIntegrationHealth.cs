using Dapper;
using Integrations.Common;
using Integrations.Features.Incidents;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using Integrations.Infrastructure.Vault;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.Integrations;

public static class CheckIntegrationHealth
{
    /// <summary>The credential behavior resolves the integration's own <c>credential_ref</c> (granted when it was attached).</summary>
    public sealed record Command(Guid Id) : IOperation<Response>, IAudited, INeedsCredential
    {
        public static string Operation => "integrations.check_health";
        public static string Scope => Scopes.Write;

        public CredentialAccessor CredentialAccessor => new(CredentialAccessor.Integration, Id);
        public string? CredentialRef => null;
    }

    /// <summary>
    /// A failing check opens (or bumps) the integration's <c>health_failure</c> incident: <see cref="IncidentId"/>.
    /// <see cref="Status"/> is the integration's status after the check: <c>Integrations:Health:FailuresBeforeError</c>
    /// failing checks in a row (<see cref="ConsecutiveFailures"/>) move an enabled integration to <c>error</c>, and a
    /// healthy check moves it back to <c>enabled</c>.
    /// </summary>
    public sealed record Response(
        Guid Id, [OneOf(typeof(Integration), nameof(Integration.Healths))] string Health, DateTimeOffset CheckedAt, string Message, int? UpstreamStatus,
        long DurationMs, [OneOf(typeof(Integration), nameof(Integration.Statuses))] string Status, int ConsecutiveFailures, Guid? IncidentId = null);

    internal sealed class Handler(
        TenantSession session, AuditTrail audit, CredentialContext credentials, ProviderHealthProbe probe, IncidentRecorder incidents,
        HealthCheckSettings settings)
        : IRequestHandler<Command, Result<Response>>
    {
        private const string ReadSql = """
            SELECT provider, base_url FROM cus_integrations WHERE tenant_id = @TenantId AND id = @Id AND deleted_at IS NULL
            """;

        // Failing checks count up; a run of @Threshold moves an enabled integration to 'error' (0: never). Any other
        // answer ends the run, and a healthy one brings an integration in 'error' back.
        private const string RecordSql = """
            UPDATE cus_integrations i SET health = @Health, health_checked_at = now(), health_message = @Message,
                health_failures = n.failures, status = n.status,
                updated_at = CASE WHEN n.status <> n.before THEN now() ELSE i.updated_at END
            FROM (SELECT id, status AS before,
                         CASE WHEN @Health = 'failing' THEN health_failures + 1 ELSE 0 END AS failures,
                         CASE WHEN @Health = 'failing' AND status = 'enabled' AND @Threshold > 0 AND health_failures + 1 >= @Threshold THEN 'error'
                              WHEN @Health = 'healthy' AND status = 'error' THEN 'enabled'
                              ELSE status END AS status
                  FROM cus_integrations WHERE tenant_id = @TenantId AND id = @Id AND deleted_at IS NULL FOR UPDATE) n
            WHERE i.tenant_id = @TenantId AND i.id = n.id
            RETURNING i.health_checked_at AS checked_at, n.before AS status_before, i.status, i.health_failures AS failures
            """;

        private sealed record Recorded(DateTimeOffset CheckedAt, string StatusBefore, string Status, int Failures);

        private sealed record Target(string Provider, string? BaseUrl);

        public async Task<Result<Response>> Handle(Command request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var target = await connection.QuerySingleOrDefaultAsync<Target>(
                new CommandDefinition(ReadSql, new { session.TenantId, request.Id }, cancellationToken: ct));
            if (target is null) return Error.NotFound(Integration.SubjectType);

            ProviderHealthProbe.Outcome outcome;
            if (credentials.Current is null)
            {
                outcome = new("failing", "No credential is attached: store the key with POST /credentials and set the integration's credential_ref.", null, 0);
            }
            else if (credentials.Current.Token is not { Length: > 0 } key)
            {
                outcome = new("failing", $"The attached credential (type {credentials.Current.Type}) carries no API key or token for a provider.", null, 0);
            }
            else
            {
                var probed = await probe.ProbeAsync(target.Provider, target.BaseUrl, key, ct);
                if (!probed.IsSuccess) return probed.Error!;
                outcome = probed.Value;
            }

            var recorded = await connection.QuerySingleOrDefaultAsync<Recorded>(new CommandDefinition(RecordSql, new
            {
                session.TenantId,
                request.Id,
                outcome.Health,
                outcome.Message,
                Threshold = settings.FailuresBeforeError,
            }, cancellationToken: ct));
            if (recorded is null) return Error.NotFound(Integration.SubjectType);

            Guid? incidentId = null;
            if (outcome.Health == "failing")
            {
                var incident = await incidents.OpenOrBumpAsync(connection, session.TenantId, new IncidentReport(
                    "health_failure", "high", Integration.SubjectType, request.Id.ToString(), $"health_failure:integration:{request.Id}",
                    $"Integration health check failing: {outcome.Message}"), ct);
                incidentId = incident.Id;
            }
            audit.Record(Integration.SubjectType, request.Id.ToString(), new
            {
                outcome.Health,
                outcome.Message,
                outcome.UpstreamStatus,
                outcome.DurationMs,
                Credential = credentials.Current?.Reference ?? "none",
                IncidentId = incidentId,
                ConsecutiveFailures = recorded.Failures,
                StatusChanged = recorded.StatusBefore == recorded.Status ? null : new { From = recorded.StatusBefore, To = recorded.Status },
            });
            return new Response(request.Id, outcome.Health, recorded.CheckedAt, outcome.Message, outcome.UpstreamStatus, outcome.DurationMs,
                recorded.Status, recorded.Failures, incidentId);
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPost("/{id:guid}/health", async (Guid id, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id), http.RequestAborted)).ToHttp(http))
            .WithName(Command.Operation)
            .WithSummary("Probe the provider with the integration's resolved key and record healthy, degraded or failing.")
            .Produces<Response>()
            .ProducesProblem(StatusCodes.Status403Forbidden)
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status422UnprocessableEntity);
}
