using Dapper;
using FluentValidation;
using Integrations.Common;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using Integrations.Pipeline.Governance;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.Evidence;

/// <summary>
/// evidence.update: whether an MCP server's tool outputs, or a datasource's query results, are kept as evidence, and how
/// (redaction paths and patterns, size cap, retention). It applies to calls admitted after it; kept evidence is not
/// changed. Scope <c>admin</c>: what is kept, and for how long, is the tenant's governance.
/// </summary>
public static class UpdateEvidencePolicy
{
    public sealed record Command(string Target, Guid Id, EvidencePolicy Policy) : IOperation<TargetEvidencePolicy>, IAudited
    {
        public static string Operation => "evidence.update";
        public static string Scope => Scopes.Admin;
    }

    internal sealed class Validator : AbstractValidator<Command>
    {
        public Validator()
        {
            RuleFor(x => x.Target).Must(t => EvidenceTarget.Of(t) is not null)
                .WithMessage($"The target is one of: {string.Join(", ", EvidenceTarget.Kinds)}.");
            RuleFor(x => x.Policy).NotNull().WithMessage("A body with the policy is required.");
            RuleFor(x => x.Policy).Custom((policy, context) =>
            {
                foreach (var (field, messages) in policy.Problems())
                {
                    foreach (var message in messages) context.AddFailure(field, message);
                }
            }).When(x => x.Policy is not null);
        }
    }

    internal sealed class Handler(TenantSession session, AuditTrail audit) : IRequestHandler<Command, Result<TargetEvidencePolicy>>
    {
        public async Task<Result<TargetEvidencePolicy>> Handle(Command request, CancellationToken ct)
        {
            var (table, subjectType) = EvidenceTarget.Of(request.Target)!.Value;
            var connection = await session.ConnectionAsync(ct);
            // The table name comes from EvidenceTarget's fixed list, never from the request's text.
            var previous = await connection.QuerySingleOrDefaultAsync<Previous>(new CommandDefinition($"""
                SELECT evidence::text AS evidence FROM {table} WHERE tenant_id = @TenantId AND id = @Id AND deleted_at IS NULL FOR UPDATE
                """, new { session.TenantId, request.Id }, cancellationToken: ct));
            if (previous is null) return Error.NotFound(subjectType.Replace('_', ' '));

            var policy = request.Policy.Normalize();
            await connection.ExecuteAsync(new CommandDefinition($"""
                UPDATE {table} SET evidence = @Evidence::jsonb, updated_at = now() WHERE tenant_id = @TenantId AND id = @Id
                """, new { session.TenantId, request.Id, Evidence = policy.ToJson() }, cancellationToken: ct));
            audit.Record(subjectType, request.Id.ToString(), new { From = EvidencePolicy.FromJson(previous.Evidence), To = policy });
            return new TargetEvidencePolicy(request.Target, request.Id, policy);
        }

        private sealed record Previous(string? Evidence);
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPut("/policies/{target}/{id:guid}", async (string target, Guid id, EvidencePolicy body, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(target, id, body), http.RequestAborted)).ToHttp(http))
            .WithName(Command.Operation)
            .WithRequestExample(new EvidencePolicy(true, ["$.structuredContent.customer.phone"], [EvidenceRedactor.Email, EvidenceRedactor.Secret], 65536, 30))
            .WithSummary("Keep an MCP server's tool outputs or a datasource's query results as evidence: redaction paths and patterns, size cap, retention.")
            .Produces<TargetEvidencePolicy>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status404NotFound);
}
