using System.Diagnostics;
using Dapper;
using Integrations.Common;
using Integrations.Features.Connectors.Adapters;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using Integrations.Infrastructure.Vault;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.Connectors;

/// <summary>
/// connections.test (the contract's <i>connect</i>): one real round trip to the service with the connection's
/// credential, resolved through the vault under the connection's grant. The answer says whether it worked and what the
/// service said; the attempt is audited either way.
/// </summary>
public static class TestConnection
{
    public const string TestedAction = "connection.tested";

    public sealed record Command(Guid Id) : IOperation<Response>, IAudited, INeedsCredential
    {
        public static string Operation => "connections.test";
        public static string Scope => Scopes.Write;

        public CredentialAccessor CredentialAccessor => Connection.AccessorOf(Id);
        public string? CredentialRef => null;
    }

    public sealed record Response(Guid Id, bool Ok, int? Status, string Detail, double DurationMs);

    internal sealed class Handler(TenantSession session, AuditTrail audit, ConnectorCatalog catalog, ConnectorAdapters adapters, CredentialContext credentials)
        : IRequestHandler<Command, Result<Response>>
    {
        private const string Sql = $"SELECT {Connection.Columns} FROM connections WHERE tenant_id = @TenantId AND id = @Id AND deleted_at IS NULL";

        public async Task<Result<Response>> Handle(Command request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var row = await connection.QuerySingleOrDefaultAsync<Connection.Row>(new CommandDefinition(Sql, new { session.TenantId, request.Id }, cancellationToken: ct));
            if (row is null) return Error.NotFound("connection");
            var found = await catalog.FindAsync(connection, session.TenantId, row.Connector, ct);
            if (found is null) return Error.Conflict($"The connector '{row.Connector}' is no longer registered.");
            // No transaction of ours stays open across the round trip.
            await session.RollbackAsync();

            var started = Stopwatch.GetTimestamp();
            var probe = await adapters.For(found.Value.Manifest.Connector)
                .TestAsync(new ConnectionEndpoint(row.Id, session.TenantId, row.Name, row.ConfigurationJson()), credentials.Current, ct);
            var duration = Math.Round(Stopwatch.GetElapsedTime(started).TotalMilliseconds, 3);
            audit.Record(Connection.SubjectType, row.Id.ToString(), new { row.Name, row.Connector, probe.Ok, probe.Status, probe.Detail }, TestedAction);
            return new Response(row.Id, probe.Ok, probe.Status, probe.Detail, duration);
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPost("/{id:guid}/test", async (Guid id, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id), http.RequestAborted)).ToHttp(http))
            .WithName(Command.Operation)
            .WithSummary("A real round trip to the connection's service with its credential; ok false says what went wrong.")
            .Produces<Response>()
            .ProducesProblem(StatusCodes.Status404NotFound);
}
