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

namespace Integrations.Features.Datasources;

public static class RegisterDatasource
{
    public const int DefaultRowLimit = 1000;
    public const int DefaultStatementTimeoutMs = 5000;

    public sealed record Command(
        string Name,
        string Host,
        string Database,
        string Username,
        string CredentialRef,
        int Port = 5432,
        [OneOf(typeof(Datasource), nameof(Datasource.Kinds))] string Kind = "postgres",
        [OneOf(typeof(Datasource), nameof(Datasource.TlsModes))] string TlsMode = "verify-full",
        int? RowLimit = null,
        int? StatementTimeoutMs = null,
        IReadOnlyList<string>? AllowedFunctions = null) : IOperation<Datasource.Response>, IAudited
    {
        public static string Operation => "datasources.register";
        public static string Scope => Scopes.Write;
    }

    internal sealed class Validator : AbstractValidator<Command>
    {
        public Validator(EgressAllowList allowList, CallerContext caller)
        {
            RuleFor(x => x.Name).ValidName();
            RuleFor(x => x.Kind).Must(k => Datasource.Kinds.Contains(k))
                .WithMessage($"Kind must be one of: {string.Join(", ", Datasource.Kinds)}.");
            RuleFor(x => x.Host).ValidHost();
            RuleFor(x => x.Port).InclusiveBetween(1, 65535).WithMessage("Port must be between 1 and 65535.");
            RuleFor(x => x.Database).ValidPostgresName("Database");
            RuleFor(x => x.Username).ValidPostgresName("Username");
            RuleFor(x => x.CredentialRef).ValidCredentialRef(() => caller.TenantId);
            RuleFor(x => x.TlsMode).Must(m => Datasource.TlsModes.Contains(m))
                .WithMessage($"TLS mode must be one of: {string.Join(", ", Datasource.TlsModes)}.");
            RuleFor(x => x.TlsMode).Must((command, mode) => Datasource.TlsModeAllowed(mode, command.Host, allowList))
                .When(x => Datasource.TlsModes.Contains(x.TlsMode))
                .WithMessage("TLS modes 'disable' and 'prefer' are allowed only for hosts the configuration trusts; use 'require' or 'verify-full'.");
            RuleFor(x => x.RowLimit).ValidRowLimit();
            RuleFor(x => x.StatementTimeoutMs).ValidTimeout();
            this.ValidAllowedFunctions(x => x.AllowedFunctions);
        }
    }

    internal sealed class Handler(TenantSession session, AuditTrail audit, SsrfGuard guard, CredentialGrants grants)
        : IRequestHandler<Command, Result<Datasource.Response>>
    {
        private const string Sql = $"""
            INSERT INTO datasources (id, tenant_id, name, kind, host, port, database, username, credential_ref, tls_mode,
                row_limit, statement_timeout_ms, allowed_functions)
            VALUES (@Id, @TenantId, @Name, @Kind, @Host, @Port, @Database, @Username, @CredentialRef, @TlsMode,
                @RowLimit, @StatementTimeoutMs, @AllowedFunctions)
            ON CONFLICT DO NOTHING
            RETURNING {Datasource.Columns}
            """;

        public async Task<Result<Datasource.Response>> Handle(Command request, CancellationToken ct)
        {
            var allowed = await guard.CheckHostAsync(request.Host, ct);
            if (!allowed.IsSuccess) return allowed.Error!;

            var connection = await session.ConnectionAsync(ct);
            var row = await connection.QuerySingleOrDefaultAsync<Datasource.Row>(new CommandDefinition(Sql, new
            {
                Id = Ids.New(),
                session.TenantId,
                request.Name,
                request.Kind,
                request.Host,
                request.Port,
                request.Database,
                request.Username,
                request.CredentialRef,
                request.TlsMode,
                RowLimit = request.RowLimit ?? DefaultRowLimit,
                StatementTimeoutMs = request.StatementTimeoutMs ?? DefaultStatementTimeoutMs,
                AllowedFunctions = Datasource.NormalizedFunctions(request.AllowedFunctions ?? []),
            }, cancellationToken: ct));
            if (row is null) return Error.Conflict($"A datasource named '{request.Name}' already exists.");
            // Attaching the reference grants the datasource (and only it) the credential.
            var accessor = new CredentialAccessor(CredentialAccessor.Datasource, row.Id);
            if (await grants.AttachAsync(accessor, request.CredentialRef, ct) is { } credentialError) return credentialError;

            audit.Record(Datasource.SubjectType, row.Id.ToString(), new
            {
                row.Name,
                row.Kind,
                row.Host,
                row.Port,
                row.Database,
                row.Username,
                CredentialRef = CredentialReference.Describe(row.CredentialRef),
                row.TlsMode,
                row.RowLimit,
                row.StatementTimeoutMs,
                row.AllowedFunctions,
            });
            return row.ToResponse();
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPost("/", async (Command command, IMediator mediator, HttpContext http) =>
                (await mediator.Send(command, http.RequestAborted)).ToHttp(http,
                    created => TypedResults.Created($"/integrations/datasources/{created.Id}", created)))
            .WithName(Command.Operation)
            .WithRequestExample(new Command("shop", "db.example.com", "shop", "reader", "cus-vault://acme/0192f4a0-8c1e-7a3b-9d2e-5f6a7b8c9d0e",
                RowLimit: 500, StatementTimeoutMs: 3000))
            .WithSummary("Register a PostgreSQL datasource (status 'pending' until tested). The password is a credential reference.")
            .Produces<Datasource.Response>(StatusCodes.Status201Created)
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status409Conflict)
            .ProducesProblem(StatusCodes.Status422UnprocessableEntity);
}
