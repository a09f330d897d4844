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

    /// <summary>A failing check opens (or bumps) the integration's <c>health_failure</c> incident: <see cref="IncidentId"/>.</summary>
    public sealed record Response(Guid Id, string Health, DateTimeOffset CheckedAt, string Message, int? UpstreamStatus, long DurationMs, Guid? IncidentId = null);

    internal sealed class Handler(
        TenantSession session, AuditTrail audit, CredentialContext credentials, ProviderHealthProbe probe, IncidentRecorder incidents)
        : IRequestHandler<Command, Result<Response>>
    {
        private const string ReadSql = """
            SELECT provider, base_url FROM cus_integrations WHERE tenant_id = @TenantId AND id = @Id AND deleted_at IS NULL
            """;

        private const string RecordSql = """
            UPDATE cus_integrations SET health = @Health, health_checked_at = now(), health_message = @Message
            WHERE tenant_id = @TenantId AND id = @Id AND deleted_at IS NULL
            RETURNING health_checked_at
            """;

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

            var checkedAt = await connection.QuerySingleOrDefaultAsync<DateTimeOffset?>(new CommandDefinition(RecordSql, new
            {
                session.TenantId,
                request.Id,
                outcome.Health,
                outcome.Message,
            }, cancellationToken: ct));
            if (checkedAt is null) return Error.NotFound(Integration.SubjectType);

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
            });
            return new Response(request.Id, outcome.Health, checkedAt.Value, outcome.Message, outcome.UpstreamStatus, outcome.DurationMs, incidentId);
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
