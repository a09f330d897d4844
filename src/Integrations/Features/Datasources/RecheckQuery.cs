using Dapper;
using Integrations.Common;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Datasources;
using Integrations.Infrastructure.Http;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.Datasources;

/// <summary>
/// datasources.recheck_query (<see cref="StoredTemplateCheck"/> sends it as a system caller on start-up; a tenant may send
/// it too, e.g. once a datasource that was unreachable then is back): a stored
/// template defined under older rules of the gateway (<c>guard_version</c> below <see cref="FunctionAllowList.RulesVersion"/>)
/// goes through the same checks as a definition. It passes: <c>datasource.query.rechecked</c> and it may run again. It
/// fails: it is disabled for good with <c>datasource.query.disabled</c> and the reason. The datasource cannot be
/// reached or its password resolved: nothing changes, the template stays unable to run, and the next pass tries again.
/// </summary>
public static class RecheckQuery
{
    public const string Rechecked = "datasource.query.rechecked";
    public const string Disabled = "datasource.query.disabled";

    public sealed record Command(Guid DatasourceId, string Name) : IOperation<Response>, IAudited
    {
        public static string Operation => "datasources.recheck_query";
        public static string Scope => Scopes.Write;
    }

    /// <summary><paramref name="DisabledReason"/> is null when the template passed.</summary>
    public sealed record Response(Guid QueryId, bool Passed, string? DisabledReason);

    internal sealed class Handler(TenantSession session, AuditTrail audit, SqlGateway gateway, DatasourceSignIns signIns)
        : IRequestHandler<Command, Result<Response>>
    {
        private const string ReadSql = """
            SELECT q.id, q.name, q.sql, q.parameters::text AS parameters, q.timeout_ms, q.enabled, q.guard_version,
                   d.id AS datasource_id, d.host, d.port, d.database, d.username, d.credential_ref, d.tls_mode, d.allowed_functions
            FROM datasource_queries q
            JOIN datasources d ON d.tenant_id = q.tenant_id AND d.id = q.datasource_id AND d.deleted_at IS NULL
            WHERE q.tenant_id = @TenantId AND q.datasource_id = @DatasourceId AND q.name = @Name AND q.deleted_at IS NULL
            """;

        // Only the text that was checked, and only once: a redefinition or a concurrent pass in between wins.
        private const string UpdateSql = """
            UPDATE datasource_queries
            SET guard_version = @Version, updated_at = now(),
                enabled = CASE WHEN @Reason::text IS NULL THEN enabled ELSE false END, disabled_reason = @Reason
            WHERE tenant_id = @TenantId AND id = @Id AND sql = @Sql AND guard_version < @Version AND deleted_at IS NULL
            """;

        public async Task<Result<Response>> Handle(Command request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var row = await connection.QuerySingleOrDefaultAsync<Row>(new CommandDefinition(ReadSql, new { session.TenantId, request.DatasourceId, request.Name }, cancellationToken: ct));
            if (row is null) return Error.NotFound("query template");
            if (row.GuardVersion >= FunctionAllowList.RulesVersion) return Error.Conflict("The template already passed the current rules.");
            // Checking on the datasource takes round trips: our transaction does not wait open.
            await session.CommitAsync(ct);

            var declared = Datasource.ParseParameters(row.Parameters);
            string? reason = null;
            if (!SqlTemplateGuard.TryCheck(row.Sql, declared.Select(p => p.Name).ToList(), row.TimeoutMs, out var template, out _, out var lexical))
            {
                reason = lexical;
            }
            else
            {
                var signIn = await signIns.ResolveAsync(row.Endpoint, row.CredentialRef, Command.Operation, ct);
                if (!signIn.IsSuccess) return signIn.Error!;
                var described = await gateway.DescribeAsync(row.Endpoint, signIn.Value, template!, declared.Select(p => p.Type).ToList(),
                    row.TimeoutMs, ct, row.AllowedFunctions);
                if (!described.IsSuccess && described.Error!.Code != "validation_failed") return described.Error;
                reason = described.IsSuccess ? null : string.Join(" ", described.Error!.FieldErrors?.SelectMany(f => f.Value) ?? [described.Error.Detail]);
            }

            connection = await session.ConnectionAsync(ct);
            var updated = await connection.ExecuteAsync(new CommandDefinition(UpdateSql, new
            {
                Version = FunctionAllowList.RulesVersion,
                Reason = reason,
                session.TenantId,
                row.Id,
                row.Sql,
            }, cancellationToken: ct));
            if (updated == 0) return Error.Conflict("The template changed while it was being checked; the next pass checks it again.");

            audit.Record(Datasource.QuerySubjectType, row.Id.ToString(), new
            {
                row.DatasourceId,
                row.Name,
                RulesVersion = FunctionAllowList.RulesVersion,
                WasEnabled = row.Enabled,
                Reason = reason,
            }, reason is null ? Rechecked : Disabled);
            return new Response(row.Id, reason is null, reason);
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPost("/{id:guid}/queries/{name}/recheck", async (Guid id, string name, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id, name), http.RequestAborted)).ToHttp(http))
            .WithName(Command.Operation)
            .WithSummary("Check a stored template defined under older rules of the gateway against the current ones now: it passes and may run, or it is disabled for good with the reason.")
            .Produces<Response>()
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status409Conflict)
            .ProducesProblem(StatusCodes.Status502BadGateway)
            .ProducesProblem(StatusCodes.Status504GatewayTimeout);

    internal sealed class Row
    {
        public Guid Id { get; init; }
        public required string Name { get; init; }
        public required string Sql { get; init; }
        public required string Parameters { get; init; }
        public int TimeoutMs { get; init; }
        public bool Enabled { get; init; }
        public int GuardVersion { get; init; }
        public Guid DatasourceId { get; init; }
        public required string Host { get; init; }
        public int Port { get; init; }
        public required string Database { get; init; }
        public required string Username { get; init; }
        public required string CredentialRef { get; init; }
        public required string TlsMode { get; init; }
        public string[] AllowedFunctions { get; init; } = [];

        public DatasourceTarget Endpoint => new(DatasourceId, Host, Port, Database, Username, TlsMode);
    }
}
