using System.Text.Json;
using Dapper;
using FluentValidation;
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
/// datasources.define_query: the only way SQL gets into the gateway. The text passes the lexical rules
/// (<see cref="SqlTemplateGuard"/>), then the datasource parses it in a READ ONLY transaction and everything its parse
/// tree calls must be on the allow-list (<see cref="SqlGateway.DescribeAsync"/>, <see cref="FunctionAllowList"/>, with
/// the datasource's own extension functions); only then is it stored, with the columns the datasource described and
/// the version of the rules it passed.
/// </summary>
public static class DefineQuery
{
    public const int MaxSqlLength = 20_000;

    public sealed record Command(
        Guid DatasourceId,
        string Name,
        string Sql,
        IReadOnlyList<Datasource.Parameter>? Parameters = null,
        string? Description = null,
        int? RowLimit = null,
        int? TimeoutMs = null,
        int? RateLimitPerMinute = null,
        bool Enabled = true) : IOperation<Datasource.QueryResponse>, IAudited
    {
        public static string Operation => "datasources.define_query";
        public static string Scope => Scopes.Write;
    }

    /// <summary>The HTTP body: the datasource comes from the route.</summary>
    public sealed record Body(
        string Name,
        string Sql,
        IReadOnlyList<Datasource.Parameter>? Parameters = null,
        string? Description = null,
        int? RowLimit = null,
        int? TimeoutMs = null,
        int? RateLimitPerMinute = null,
        bool Enabled = true);

    internal sealed class Validator : AbstractValidator<Command>
    {
        public Validator()
        {
            RuleFor(x => x.Name).ValidQueryName();
            RuleFor(x => x.Sql).NotEmpty().WithMessage("SQL is required.")
                .MaximumLength(MaxSqlLength).WithMessage($"SQL may be at most {MaxSqlLength} characters.");
            RuleFor(x => x.Description).MaximumLength(1000);
            RuleFor(x => x.Parameters).Must(p => p is null || p.Count <= Datasource.MaxParameters)
                .WithMessage($"At most {Datasource.MaxParameters} parameters.");
            RuleFor(x => x.Parameters).Must(p => p is null || p.Select(x => x?.Name).Distinct().Count() == p.Count)
                .WithMessage("Parameter names must be unique.");
            RuleForEach(x => x.Parameters).NotNull().WithMessage("A parameter is a {\"name\", \"type\"} object.");
            RuleForEach(x => x.Parameters).ChildRules(parameter =>
            {
                parameter.RuleFor(p => p.Name).NotEmpty().Matches("^[A-Za-z_][A-Za-z0-9_]{0,62}$")
                    .WithMessage("A parameter name is a letter or '_' followed by letters, digits or '_' (at most 63).");
                parameter.RuleFor(p => p.Type).Must(QueryParameterTypes.IsKnown)
                    .WithMessage($"Parameter type must be one of: {string.Join(", ", QueryParameterTypes.Names)}.");
            });
            RuleFor(x => x.RowLimit).ValidRowLimit();
            RuleFor(x => x.TimeoutMs).ValidTimeout();
            RuleFor(x => x.RateLimitPerMinute).GreaterThan(0).WithMessage("Rate limit per minute must be at least 1 (disable the template to stop it).");
        }
    }

    internal sealed class Handler(TenantSession session, AuditTrail audit, SqlGateway gateway, DatasourceSignIns signIns)
        : IRequestHandler<Command, Result<Datasource.QueryResponse>>
    {
        private const string ReadSql = $"""
            SELECT {Datasource.Columns} FROM datasources
            WHERE tenant_id = @TenantId AND id = @DatasourceId AND deleted_at IS NULL
            """;

        private const string InsertSql = $"""
            INSERT INTO datasource_queries (id, tenant_id, datasource_id, name, description, sql, parameters, columns,
                row_limit, timeout_ms, rate_limit_per_minute, enabled, guard_version)
            SELECT @Id, @TenantId, @DatasourceId, @Name, @Description, @Sql, @Parameters::jsonb, @Columns::jsonb,
                @RowLimit, @TimeoutMs, @RateLimitPerMinute, @Enabled, @GuardVersion
            WHERE EXISTS (SELECT 1 FROM datasources WHERE tenant_id = @TenantId AND id = @DatasourceId AND deleted_at IS NULL)
            ON CONFLICT DO NOTHING
            RETURNING {Datasource.QueryColumns}
            """;

        private const string ExistsSql = """
            SELECT EXISTS (SELECT 1 FROM datasource_queries
                           WHERE tenant_id = @TenantId AND datasource_id = @DatasourceId AND name = @Name AND deleted_at IS NULL)
            """;

        public async Task<Result<Datasource.QueryResponse>> Handle(Command request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var datasource = await connection.QuerySingleOrDefaultAsync<Datasource.Row>(
                new CommandDefinition(ReadSql, new { session.TenantId, request.DatasourceId }, cancellationToken: ct));
            if (datasource is null) return Error.NotFound(Datasource.SubjectType);
            var args = new { session.TenantId, request.DatasourceId, request.Name };
            if (await connection.ExecuteScalarAsync<bool>(new CommandDefinition(ExistsSql, args, cancellationToken: ct)))
            {
                return Conflict(request.Name);
            }
            // Checking the template on the datasource takes a round trip or more: our transaction does not wait open.
            await session.CommitAsync(ct);

            var parameters = request.Parameters ?? [];
            var timeoutMs = request.TimeoutMs ?? datasource.StatementTimeoutMs;
            if (!SqlTemplateGuard.TryCheck(request.Sql, parameters.Select(p => p.Name).ToList(), timeoutMs, out var template, out var field, out var refusal))
            {
                return Error.Validation(field, refusal);
            }
            var signIn = await signIns.ResolveAsync(datasource.Target, datasource.CredentialRef, Command.Operation, ct);
            if (!signIn.IsSuccess) return signIn.Error!;
            var columns = await gateway.DescribeAsync(datasource.Target, signIn.Value, template!, parameters.Select(p => p.Type).ToList(), timeoutMs, ct,
                datasource.AllowedFunctions);
            if (!columns.IsSuccess) return columns.Error!;

            connection = await session.ConnectionAsync(ct);
            var row = await connection.QuerySingleOrDefaultAsync<Datasource.QueryRow>(new CommandDefinition(InsertSql, new
            {
                Id = Ids.New(),
                session.TenantId,
                request.DatasourceId,
                request.Name,
                request.Description,
                request.Sql,
                Parameters = JsonSerializer.Serialize(parameters, Datasource.Json),
                Columns = JsonSerializer.Serialize(columns.Value, Datasource.Json),
                RowLimit = request.RowLimit ?? datasource.RowLimit,
                TimeoutMs = timeoutMs,
                request.RateLimitPerMinute,
                request.Enabled,
                GuardVersion = FunctionAllowList.RulesVersion,
            }, cancellationToken: ct));
            if (row is null)
            {
                return await connection.ExecuteScalarAsync<bool>(new CommandDefinition(ExistsSql, args, cancellationToken: ct))
                    ? Conflict(request.Name)
                    : Error.NotFound(Datasource.SubjectType);
            }

            audit.Record(Datasource.QuerySubjectType, row.Id.ToString(), new
            {
                row.DatasourceId,
                row.Name,
                row.Sql,
                Parameters = parameters,
                row.RowLimit,
                row.TimeoutMs,
                row.RateLimitPerMinute,
                row.Enabled,
            });
            return row.ToResponse();
        }

        private static Error Conflict(string name) =>
            Error.Conflict($"A query template named '{name}' already exists on this datasource; delete it first to redefine it.");
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPost("/{id:guid}/queries", async (Guid id, Body body, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id, body.Name, body.Sql, body.Parameters, body.Description, body.RowLimit,
                    body.TimeoutMs, body.RateLimitPerMinute, body.Enabled), http.RequestAborted)).ToHttp(http,
                    created => TypedResults.Created($"/integrations/datasources/{id}/queries/{created.Name}", created)))
            .WithName(Command.Operation)
            .WithRequestExample(new Body("orders-by-customer", "SELECT id, total FROM orders WHERE customer_id = @customer ORDER BY id DESC",
                [new Datasource.Parameter("customer", "integer")]))
            .WithSummary("Define a named, parameterised, read-only query template: checked lexically, then parsed by the datasource in a READ ONLY transaction, every function, operator and type of its parse tree checked by OID against the allow-list, then planned.")
            .Produces<Datasource.QueryResponse>(StatusCodes.Status201Created)
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status409Conflict)
            .ProducesProblem(StatusCodes.Status502BadGateway);
}
