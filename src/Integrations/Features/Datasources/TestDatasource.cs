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

public static class TestDatasource
{
    public sealed record Command(Guid Id) : IOperation<Datasource.Response>, IAudited
    {
        public static string Operation => "datasources.test";
        public static string Scope => Scopes.Write;
    }

    internal sealed class Handler(TenantSession session, AuditTrail audit, SqlGateway gateway, DatasourceSignIns signIns)
        : IRequestHandler<Command, Result<Datasource.Response>>
    {
        private const string ReadSql = $"""
            SELECT {Datasource.Columns} FROM datasources
            WHERE tenant_id = @TenantId AND id = @Id AND deleted_at IS NULL
            """;

        private const string RecordSql = $"""
            UPDATE datasources
            SET status = @Status, status_message = @Message, server_version = coalesce(@ServerVersion, server_version),
                tested_at = now(), updated_at = now()
            WHERE tenant_id = @TenantId AND id = @Id AND deleted_at IS NULL
            RETURNING {Datasource.Columns}
            """;

        public async Task<Result<Datasource.Response>> Handle(Command request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var row = await connection.QuerySingleOrDefaultAsync<Datasource.Row>(
                new CommandDefinition(ReadSql, new { session.TenantId, request.Id }, cancellationToken: ct));
            if (row is null) return Error.NotFound(Datasource.SubjectType);
            // The probe may take seconds: our own transaction does not wait open for it.
            await session.CommitAsync(ct);

            string status, message;
            string? serverVersion = null;
            var signIn = await signIns.ResolveAsync(row.Target, row.CredentialRef, Command.Operation, ct);
            if (!signIn.IsSuccess)
            {
                (status, message) = ("failing", $"The credential could not be resolved: {signIn.Error!.Detail}");
            }
            else
            {
                var probe = await gateway.ProbeAsync(row.Target, signIn.Value, row.StatementTimeoutMs, ct);
                if (probe.IsSuccess)
                {
                    serverVersion = probe.Value.ServerVersion;
                    (status, message) = ("active", $"Connected as '{probe.Value.User}' to PostgreSQL {probe.Value.ServerVersion}; read-only probe succeeded.");
                }
                else
                {
                    (status, message) = ("failing", $"{probe.Error!.Code}: {signIn.Value.Redact(probe.Error.Detail)}");
                }
            }

            connection = await session.ConnectionAsync(ct);
            var tested = await connection.QuerySingleOrDefaultAsync<Datasource.Row>(new CommandDefinition(RecordSql, new
            {
                session.TenantId,
                request.Id,
                Status = status,
                Message = message,
                ServerVersion = serverVersion,
            }, cancellationToken: ct));
            if (tested is null) return Error.NotFound(Datasource.SubjectType);

            audit.Record(Datasource.SubjectType, row.Id.ToString(), new { Status = status, Message = message });
            return tested.ToResponse();
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPost("/{id:guid}/test", async (Guid id, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id), http.RequestAborted)).ToHttp(http))
            .WithName(Command.Operation)
            .WithSummary("Connect with the resolved credential and run a read-only probe; records status 'active' or 'failing' with the reason.")
            .Produces<Datasource.Response>()
            .ProducesProblem(StatusCodes.Status404NotFound);
}
