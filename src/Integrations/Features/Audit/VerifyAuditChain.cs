using Dapper;
using Integrations.Common;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.Audit;

public static class VerifyAuditChain
{
    public sealed record Query : IOperation<Response>
    {
        public static string Operation => "audit.verify";
        public static string Scope => Scopes.Read;
    }

    /// <summary><c>FirstBrokenSeq</c> is the first event whose hash, link or position does not hold.</summary>
    public sealed record Response(bool Valid, long EventsChecked, long? FirstBrokenSeq, string? Problem);

    internal sealed class Handler(TenantSession session) : IRequestHandler<Query, Result<Response>>
    {
        // Recomputes every hash with the same function the writer used, and checks that each event links to
        // the one before it, that no sequence number is missing, and that the chain ends where the head says.
        private const string Sql = """
            WITH checked AS (
                SELECT seq,
                       hash = audit_event_hash(prev_hash, tenant_id, seq, occurred_at, actor, action,
                                               subject_type, subject_id, correlation_id, details) AS hash_ok,
                       prev_hash = coalesce(lag(hash) OVER w, decode(repeat('00', 32), 'hex')) AS link_ok,
                       seq = coalesce(lag(seq) OVER w, 0) + 1 AS position_ok
                FROM audit_events WHERE tenant_id = @TenantId
                WINDOW w AS (ORDER BY seq))
            SELECT (SELECT count(*) FROM checked) AS events_checked,
                   (SELECT min(seq) FROM checked WHERE NOT (hash_ok AND link_ok AND position_ok)) AS first_broken_seq,
                   (SELECT CASE WHEN NOT hash_ok THEN 'hash_mismatch' WHEN NOT link_ok THEN 'broken_link' ELSE 'missing_event' END
                      FROM checked WHERE NOT (hash_ok AND link_ok AND position_ok) ORDER BY seq LIMIT 1) AS problem,
                   (SELECT last_seq FROM audit_chain_heads WHERE tenant_id = @TenantId) AS head_seq,
                   (SELECT last_hash = (SELECT hash FROM audit_events WHERE tenant_id = @TenantId ORDER BY seq DESC LIMIT 1)
                      FROM audit_chain_heads WHERE tenant_id = @TenantId) AS head_ok
            """;

        public async Task<Result<Response>> Handle(Query request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var row = await connection.QuerySingleAsync<Row>(new CommandDefinition(Sql, new { session.TenantId }, cancellationToken: ct));
            if (row.FirstBrokenSeq is { } broken) return new Response(false, row.EventsChecked, broken, row.Problem);
            if ((row.HeadSeq ?? 0) != row.EventsChecked || row.HeadOk == false)
            {
                return new Response(false, row.EventsChecked, row.EventsChecked + 1, "missing_tail");
            }
            return new Response(true, row.EventsChecked, null, null);
        }
    }

    private sealed record Row(long EventsChecked, long? FirstBrokenSeq, string? Problem, long? HeadSeq, bool? HeadOk);

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPost("/verify", async (IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("Recompute the tenant's audit hash chain and report the first event that does not hold.")
            .Produces<Response>();
}
