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
/// datasources.update_query: enable or disable a template and change its limits. The SQL and its parameters
/// cannot change here: a different statement is a new definition, checked again by the datasource.
/// </summary>
public static class UpdateQuery
{
    public sealed record Command(
        Guid DatasourceId,
        string Name,
        bool? Enabled = null,
        int? RowLimit = null,
        int? TimeoutMs = null,
        int? RateLimitPerMinute = null,
        string? Description = null) : IOperation<Datasource.QueryResponse>, IAudited
    {
        public static string Operation => "datasources.update_query";
        public static string Scope => Scopes.Write;
    }

    public sealed record Body(bool? Enabled = null, int? RowLimit = null, int? TimeoutMs = null, int? RateLimitPerMinute = null, string? Description = null);

    internal sealed class Validator : AbstractValidator<Command>
    {
        public Validator()
        {
            RuleFor(x => x).Must(x => x.Enabled is not null || x.RowLimit is not null || x.TimeoutMs is not null
                                      || x.RateLimitPerMinute is not null || x.Description is not null)
                .OverridePropertyName("body").WithMessage("Nothing to change: send enabled, row_limit, timeout_ms, rate_limit_per_minute or description.");
            RuleFor(x => x.RowLimit).ValidRowLimit();
            RuleFor(x => x.TimeoutMs).ValidTimeout();
            RuleFor(x => x.RateLimitPerMinute).GreaterThan(0).WithMessage("Rate limit per minute must be at least 1 (disable the template to stop it).");
            RuleFor(x => x.Description).MaximumLength(1000);
        }
    }

    internal sealed class Handler(TenantSession session, AuditTrail audit) : IRequestHandler<Command, Result<Datasource.QueryResponse>>
    {
        private const string ReadSql = $"""
            SELECT {Datasource.QueryColumns} FROM datasource_queries
            WHERE tenant_id = @TenantId AND datasource_id = @DatasourceId AND name = @Name AND deleted_at IS NULL
            FOR UPDATE
            """;

        private const string UpdateSql = $"""
            UPDATE datasource_queries
            SET enabled = coalesce(@Enabled, enabled), row_limit = coalesce(@RowLimit, row_limit),
                timeout_ms = coalesce(@TimeoutMs, timeout_ms), rate_limit_per_minute = coalesce(@RateLimitPerMinute, rate_limit_per_minute),
                description = coalesce(@Description, description), updated_at = now()
            WHERE tenant_id = @TenantId AND id = @Id
            RETURNING {Datasource.QueryColumns}
            """;

        public async Task<Result<Datasource.QueryResponse>> Handle(Command request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var current = await connection.QuerySingleOrDefaultAsync<Datasource.QueryRow>(
                new CommandDefinition(ReadSql, new { session.TenantId, request.DatasourceId, request.Name }, cancellationToken: ct));
            if (current is null) return Error.NotFound("query template");
            if (request.Enabled == true && current.DisabledReason is { } reason)
            {
                return Error.Validation("enabled", $"The gateway disabled this template because it no longer passes its rules ({reason}) " +
                                                   "It cannot be enabled again: delete it and define it anew.");
            }

            // A shorter timeout must still cover any pg_sleep literal in the statement.
            if (request.TimeoutMs is { } timeoutMs
                && !SqlTemplateGuard.TryCheck(current.Sql, current.ParameterList.Select(p => p.Name).ToList(), timeoutMs, out _, out _, out var refusal))
            {
                return Error.Validation("timeout_ms", refusal);
            }

            var row = await connection.QuerySingleAsync<Datasource.QueryRow>(new CommandDefinition(UpdateSql, new
            {
                session.TenantId,
                current.Id,
                request.Enabled,
                request.RowLimit,
                request.TimeoutMs,
                request.RateLimitPerMinute,
                request.Description,
            }, cancellationToken: ct));
            audit.Record(Datasource.QuerySubjectType, row.Id.ToString(), new
            {
                row.DatasourceId,
                row.Name,
                Changed = new { request.Enabled, request.RowLimit, request.TimeoutMs, request.RateLimitPerMinute, request.Description },
            });
            return row.ToResponse();
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPatch("/{id:guid}/queries/{name}", async (Guid id, string name, Body body, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id, name, body.Enabled, body.RowLimit, body.TimeoutMs, body.RateLimitPerMinute, body.Description),
                    http.RequestAborted)).ToHttp(http))
            .WithName(Command.Operation)
            .WithSummary("Enable or disable a query template, or change its row limit, timeout, rate limit or description.")
            .Produces<Datasource.QueryResponse>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status404NotFound);
}
