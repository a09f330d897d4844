using Dapper;
using Integrations.Common;
using Integrations.Features.Incidents;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using Integrations.Infrastructure.Mcp;
using Integrations.Infrastructure.Vault;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.McpServers;

public static class CheckMcpServerHealth
{
    /// <summary>The credential behavior resolves the server's own <c>credential_ref</c> (granted at registration).</summary>
    public sealed record Command(Guid Id) : IOperation<Response>, IAudited, INeedsCredential
    {
        public static string Operation => "mcp_servers.health";
        public static string Scope => Scopes.Write;

        public CredentialAccessor CredentialAccessor => new(CredentialAccessor.McpServer, Id);
        public string? CredentialRef => null;
    }

    /// <summary>
    /// <c>status</c>: active (answered in time), degraded (answered slowly or wrongly), unreachable (no answer).
    /// <c>method</c>: the probe that decided it (ping, server/discover, or initialize when ping is not offered).
    /// A failed probe opens (or bumps) the server's <c>health_failure</c> incident: <see cref="IncidentId"/>.
    /// </summary>
    public sealed record Response(
        Guid Id, string Status, string PreviousStatus, int? LatencyMs, string Method, string? Detail, string? ErrorCode, DateTimeOffset CheckedAt,
        Guid? IncidentId = null);

    internal sealed class Handler(
        TenantSession session, AuditTrail audit, McpSessions sessions, CredentialContext credentials, IncidentRecorder incidents)
        : IRequestHandler<Command, Result<Response>>
    {
        // An admin's 'disabled' is not overridden by what a probe sees.
        private const string RecordSql = """
            UPDATE mcp_servers SET status = CASE WHEN status = 'disabled' THEN status ELSE @Status END,
                last_health_check_at = now(), health_latency_ms = @LatencyMs, health_detail = @Detail, updated_at = now()
            WHERE tenant_id = @TenantId AND id = @Id AND deleted_at IS NULL
            RETURNING status, last_health_check_at AS checked_at
            """;

        private sealed record Recorded(string Status, DateTimeOffset CheckedAt);

        public async Task<Result<Response>> Handle(Command request, CancellationToken ct)
        {
            var server = await McpServer.FindAsync(session, request.Id, ct);
            if (server is null) return Error.NotFound("MCP server");
            var auth = McpServer.AuthFrom(credentials.Current, server.AuthHeader);
            if (!auth.IsSuccess) return auth.Error!;
            await session.RollbackAsync();

            var probe = await sessions.ProbeAsync(server.Endpoint(session.TenantId, auth.Value), ct);

            var connection = await session.ConnectionAsync(ct);
            var recorded = await connection.QuerySingleOrDefaultAsync<Recorded>(new CommandDefinition(RecordSql, new
            {
                session.TenantId,
                request.Id,
                probe.Status,
                probe.LatencyMs,
                probe.Detail,
            }, cancellationToken: ct));
            if (recorded is null) return Error.NotFound("MCP server");
            // A disabled server keeps no pooled session: the probe's one goes with it.
            if (recorded.Status == McpServer.Disabled) sessions.Close(session.TenantId, request.Id, forgetCircuit: false);

            // No answer is a high-severity failure; an answer that is an error (refused, 5xx, not MCP) a medium one; slowness none.
            Guid? incidentId = null;
            if (probe.ErrorCode is not null)
            {
                var incident = await incidents.OpenOrBumpAsync(connection, session.TenantId, new IncidentReport(
                    "health_failure", probe.Status == McpProbe.Unreachable ? "high" : "medium", McpServer.SubjectType, request.Id.ToString(),
                    $"health_failure:{McpServer.SubjectType}:{request.Id}", $"MCP server '{server.Name}' is {probe.Status}: {probe.Detail}"), ct);
                incidentId = incident.Id;
            }

            audit.Record(McpServer.SubjectType, request.Id.ToString(), new
            {
                recorded.Status,
                PreviousStatus = server.Status,
                probe.LatencyMs,
                probe.Method,
                probe.Detail,
                probe.ErrorCode,
                IncidentId = incidentId,
            });
            return new Response(request.Id, recorded.Status, server.Status, probe.LatencyMs, probe.Method, probe.Detail, probe.ErrorCode,
                recorded.CheckedAt, incidentId);
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPost("/{id:guid}/health", async (Guid id, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id), http.RequestAborted)).ToHttp(http))
            .WithName(Command.Operation)
            .WithSummary("Probe the server now (ping, falling back to initialize) and record its status, latency and detail.")
            .Produces<Response>()
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status422UnprocessableEntity);
}
