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

    internal sealed class Handler(TenantSession session, AuditTrail audit, SqlGateway gateway, DatasourcePasswords passwords)
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
            var password = await passwords.ResolveAsync(row.Id, row.CredentialRef, Command.Operation, ct);
            if (!password.IsSuccess)
            {
                (status, message) = ("failing", $"The credential could not be resolved: {password.Error!.Detail}");
            }
            else
            {
                var probe = await gateway.ProbeAsync(row.Target, password.Value, row.StatementTimeoutMs, ct);
                if (probe.IsSuccess)
                {
                    serverVersion = probe.Value.ServerVersion;
                    (status, message) = ("active", $"Connected as '{probe.Value.User}' to PostgreSQL {probe.Value.ServerVersion}; read-only probe succeeded.");
                }
                else
                {
                    (status, message) = ("failing", $"{probe.Error!.Code}: {Redact(probe.Error.Detail, password.Value)}");
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

        /// <summary>Belt and braces: whatever a driver put in a message, the secret never reaches a row, a response or the audit trail.</summary>
        private static string Redact(string? text, string secret) =>
            string.IsNullOrEmpty(text) ? string.Empty : secret.Length == 0 ? text : text.Replace(secret, "[redacted]", StringComparison.Ordinal);
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPost("/{id:guid}/test", async (Guid id, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id), http.RequestAborted)).ToHttp(http))
            .WithName(Command.Operation)
            .WithSummary("Connect with the resolved credential and run a read-only probe; records status 'active' or 'failing' with the reason.")
            .Produces<Datasource.Response>()
            .ProducesProblem(StatusCodes.Status404NotFound);
}
