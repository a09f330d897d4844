using Dapper;
using FluentValidation;
using Integrations.Common;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Datasources;
using Integrations.Infrastructure.Http;
using Integrations.Infrastructure.Network;
using Integrations.Infrastructure.Vault;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Npgsql;

namespace Integrations.Features.Datasources;

/// <summary>
/// datasources.update: change a datasource in place instead of deleting it with its templates. What it connects to
/// (host, port, database, username, TLS mode) or the extension functions it allows decide what its templates may do,
/// so either change sends every template that was not disabled for good back through the gateway's checks: until
/// each passes against the new datasource (right away, in the background), its runs are denied
/// <c>template_unchecked</c>; one that fails is disabled with the reason. A new target or credential also sets the
/// status back to <c>pending</c> until the next test, and drops the pooled connections to the old one.
/// </summary>
public static class UpdateDatasource
{
    /// <summary>Fields left null keep their value; <c>allowed_functions</c>, when given, replaces the list (<c>[]</c> clears it).</summary>
    public sealed record Body(
        string? Name = null,
        string? Host = null,
        int? Port = null,
        string? Database = null,
        string? Username = null,
        string? CredentialRef = null,
        [OneOf(typeof(Datasource), nameof(Datasource.TlsModes))] string? TlsMode = null,
        int? RowLimit = null,
        int? StatementTimeoutMs = null,
        IReadOnlyList<string>? AllowedFunctions = null);

    public sealed record Command(Guid Id, Body Changes) : IOperation<Datasource.Response>, IAudited
    {
        public static string Operation => "datasources.update";
        public static string Scope => Scopes.Write;
    }

    internal sealed class Validator : AbstractValidator<Command>
    {
        public Validator(CallerContext caller)
        {
            RuleFor(x => x.Changes).NotNull().WithMessage("A body with the fields to change is required.");
            When(x => x.Changes is not null, () =>
            {
                RuleFor(x => x.Changes.Name).ValidName().OverridePropertyName("Name").When(x => x.Changes.Name is not null);
                RuleFor(x => x.Changes.Host).ValidHost().OverridePropertyName("Host").When(x => x.Changes.Host is not null);
                RuleFor(x => x.Changes.Port).InclusiveBetween(1, 65535).OverridePropertyName("Port").WithMessage("Port must be between 1 and 65535.");
                RuleFor(x => x.Changes.Database).ValidPostgresName("Database").OverridePropertyName("Database").When(x => x.Changes.Database is not null);
                RuleFor(x => x.Changes.Username).ValidPostgresName("Username").OverridePropertyName("Username").When(x => x.Changes.Username is not null);
                RuleFor(x => x.Changes.CredentialRef).ValidCredentialRef(() => caller.TenantId).OverridePropertyName("CredentialRef")
                    .When(x => x.Changes.CredentialRef is not null);
                RuleFor(x => x.Changes.TlsMode).Must(m => Datasource.TlsModes.Contains(m)).OverridePropertyName("TlsMode")
                    .When(x => x.Changes.TlsMode is not null)
                    .WithMessage($"TLS mode must be one of: {string.Join(", ", Datasource.TlsModes)}.");
                RuleFor(x => x.Changes.RowLimit).ValidRowLimit().OverridePropertyName("RowLimit");
                RuleFor(x => x.Changes.StatementTimeoutMs).ValidTimeout().OverridePropertyName("StatementTimeoutMs");
                this.ValidAllowedFunctions(x => x.Changes.AllowedFunctions, "AllowedFunctions");
            });
        }
    }

    internal sealed class Handler(
        TenantSession session, AuditTrail audit, SsrfGuard guard, CredentialGrants grants, EgressAllowList allowList,
        DatasourceConnections connections, StoredTemplateCheck templateCheck)
        : IRequestHandler<Command, Result<Datasource.Response>>
    {
        private const string ReadSql = $"""
            SELECT {Datasource.Columns} FROM datasources WHERE tenant_id = @TenantId AND id = @Id AND deleted_at IS NULL FOR UPDATE
            """;

        private const string UpdateSql = $"""
            UPDATE datasources SET name = @Name, host = @Host, port = @Port, database = @Database, username = @Username,
                credential_ref = @CredentialRef, tls_mode = @TlsMode, row_limit = @RowLimit, statement_timeout_ms = @StatementTimeoutMs,
                allowed_functions = @AllowedFunctions, updated_at = now(),
                status = CASE WHEN @Reconnect THEN 'pending' ELSE status END,
                status_message = CASE WHEN @Reconnect THEN 'Changed: test it again (POST .../test).' ELSE status_message END
            WHERE tenant_id = @TenantId AND id = @Id AND deleted_at IS NULL
            RETURNING {Datasource.Columns}
            """;

        // Templates disabled for good by a failed check stay so; every other one is checked again.
        private const string UncheckSql = """
            UPDATE datasource_queries SET guard_version = 0, updated_at = now()
            WHERE tenant_id = @TenantId AND datasource_id = @Id AND deleted_at IS NULL AND disabled_reason IS NULL
            """;

        public async Task<Result<Datasource.Response>> Handle(Command request, CancellationToken ct)
        {
            var changes = request.Changes;
            var connection = await session.ConnectionAsync(ct);
            var before = await connection.QuerySingleOrDefaultAsync<Datasource.Row>(new CommandDefinition(ReadSql, new { session.TenantId, request.Id }, cancellationToken: ct));
            if (before is null) return Error.NotFound(Datasource.SubjectType);

            var host = changes.Host ?? before.Host;
            var tlsMode = changes.TlsMode ?? before.TlsMode;
            if (!Datasource.TlsModeAllowed(tlsMode, host, allowList))
            {
                return Error.Validation(changes.TlsMode is null ? "host" : "tls_mode",
                    $"TLS mode '{tlsMode}' is allowed only for hosts the configuration trusts, and '{host}' is not one: use 'require' or 'verify-full'.");
            }
            if (changes.Host is not null && changes.Host != before.Host)
            {
                var allowed = await guard.CheckHostAsync(changes.Host, ct);
                if (!allowed.IsSuccess) return allowed.Error!;
            }

            var functions = changes.AllowedFunctions is null ? before.AllowedFunctions : Datasource.NormalizedFunctions(changes.AllowedFunctions);
            var after = new
            {
                Name = changes.Name ?? before.Name,
                Host = host,
                Port = changes.Port ?? before.Port,
                Database = changes.Database ?? before.Database,
                Username = changes.Username ?? before.Username,
                CredentialRef = changes.CredentialRef ?? before.CredentialRef,
                TlsMode = tlsMode,
                RowLimit = changes.RowLimit ?? before.RowLimit,
                StatementTimeoutMs = changes.StatementTimeoutMs ?? before.StatementTimeoutMs,
                AllowedFunctions = functions,
            };
            var targetChanged = (after.Host, after.Port, after.Database, after.Username, after.TlsMode)
                != (before.Host, before.Port, before.Database, before.Username, before.TlsMode);
            var credentialChanged = after.CredentialRef != before.CredentialRef;
            var functionsChanged = !functions.SequenceEqual(before.AllowedFunctions, StringComparer.Ordinal);

            Datasource.Row row;
            try
            {
                row = await connection.QuerySingleAsync<Datasource.Row>(new CommandDefinition(UpdateSql, new
                {
                    session.TenantId,
                    request.Id,
                    after.Name,
                    after.Host,
                    after.Port,
                    after.Database,
                    after.Username,
                    after.CredentialRef,
                    after.TlsMode,
                    after.RowLimit,
                    after.StatementTimeoutMs,
                    after.AllowedFunctions,
                    Reconnect = targetChanged || credentialChanged,
                }, cancellationToken: ct));
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.UniqueViolation)
            {
                return Error.Conflict($"A datasource named '{after.Name}' already exists.");
            }

            var accessor = new CredentialAccessor(CredentialAccessor.Datasource, row.Id);
            if (credentialChanged)
            {
                if (await grants.AttachAsync(accessor, after.CredentialRef, ct) is { } credentialError) return credentialError;
            }
            // A new host sends the password already attached to a new destination: that is attaching it again.
            else if (after.Host != before.Host && await grants.MayAttachAsync(accessor, row.CredentialRef, destinationHost: null, ct) is { } moveError)
            {
                return moveError;
            }

            var templatesToRecheck = 0;
            if (targetChanged || functionsChanged)
            {
                templatesToRecheck = await connection.ExecuteAsync(new CommandDefinition(UncheckSql, new { session.TenantId, request.Id }, cancellationToken: ct));
            }
            session.AfterCommit(() =>
            {
                if (targetChanged || credentialChanged) connections.Forget(row.Id);
                if (templatesToRecheck > 0) templateCheck.CheckSoon();
            });

            audit.Record(Datasource.SubjectType, row.Id.ToString(), new
            {
                Changed = new
                {
                    changes.Name,
                    changes.Host,
                    changes.Port,
                    changes.Database,
                    changes.Username,
                    CredentialRef = changes.CredentialRef is null ? null : CredentialReference.Describe(changes.CredentialRef),
                    changes.TlsMode,
                    changes.RowLimit,
                    changes.StatementTimeoutMs,
                    AllowedFunctions = changes.AllowedFunctions is null ? null : functions,
                },
                TemplatesToRecheck = templatesToRecheck,
            });
            return row.ToResponse();
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPatch("/{id:guid}", async (Guid id, Body body, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id, body), http.RequestAborted)).ToHttp(http))
            .WithName(Command.Operation)
            .WithSummary("Change a datasource in place. A new host, port, database, username, TLS mode or function list sends its templates through the checks again (runs are denied 'template_unchecked' until each passes).")
            .Produces<Datasource.Response>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status403Forbidden)
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status409Conflict)
            .ProducesProblem(StatusCodes.Status422UnprocessableEntity)
            .ProducesProblem(StatusCodes.Status502BadGateway);
}
