using System.Security.Cryptography;
using System.Text.Json;
using Integrations.Common;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Npgsql;

namespace Integrations.Features.Audit;

public static class VerifyAuditChain
{
    public sealed record Query : IOperation<Response>
    {
        public static string Operation => "audit.verify";
        public static string Scope => Scopes.Read;
    }

    /// <summary>
    /// <c>FirstBrokenSeq</c> is the first event whose position, link, hash, MAC or anchor does not hold; <c>Problem</c>
    /// says which. <c>UnkeyedEvents</c> counts events written before the chain was keyed (migration 0015): their content
    /// is protected by the hash chain and anchors only.
    /// </summary>
    public sealed record Response(bool Valid, long EventsChecked, long? FirstBrokenSeq, string? Problem, long AnchorsChecked, long UnkeyedEvents);

    internal sealed class Handler(TenantSession session, AuditKeys keys, AuditAnchorFile anchors) : IRequestHandler<Query, Result<Response>>
    {
        // The hash is recomputed as the function that appended the event computed it (audit_chain_hash, migration
        // 0040); links, MACs and anchors are checked here, because the MAC keys never reach PostgreSQL. The head comes
        // with every row, so events and head are one snapshot even while writers commit (the head alone is read only
        // for a chain without events).
        private const string EventsSql = """
            SELECT e.seq, e.event_id, e.occurred_at, e.actor, e.action, e.subject_type, e.subject_id, e.correlation_id, e.details::text,
                   e.key_id, e.mac, e.prev_hash, e.hash,
                   e.hash = audit_chain_hash(e.prev_hash, e.tenant_id, e.seq, e.occurred_at, e.actor, e.action, e.subject_type,
                                             e.subject_id, e.correlation_id, e.details, e.event_id, e.key_id, e.mac,
                                             coalesce(h.compact_hashes_from, 1)) AS hash_ok,
                   h.last_seq, h.last_hash
            FROM audit_events e LEFT JOIN audit_chain_heads h ON h.tenant_id = e.tenant_id
            WHERE e.tenant_id = $1 ORDER BY e.seq
            """;

        private const string HeadSql = "SELECT last_seq, last_hash FROM audit_chain_heads WHERE tenant_id = $1";

        public async Task<Result<Response>> Handle(Query request, CancellationToken ct)
        {
            var tenant = session.TenantId;
            var tenantAnchors = anchors.Read(tenant);
            var anchored = new Dictionary<long, byte[]>();
            (long Seq, string Problem)? broken = null;
            void Found(long seq, string problem)
            {
                if (broken is null || seq < broken.Value.Seq) broken = (seq, problem);
            }
            foreach (var (anchor, signed) in tenantAnchors)
            {
                if (!signed) Found(anchor.Seq, "anchor_forged");
                else anchored[anchor.Seq] = anchor.Hash;
            }

            var connection = await session.ConnectionAsync(ct);
            (long Seq, byte[] Hash)? head = null;
            long count = 0, unkeyed = 0, lastSeq = 0;
            var lastHash = new byte[32];
            var keyed = false;
            var ids = new HashSet<Guid>();
            await using (var command = new NpgsqlCommand(EventsSql, connection))
            {
                command.Parameters.Add(new NpgsqlParameter { Value = tenant });
                await using var reader = await command.ExecuteReaderAsync(ct);
                while (await reader.ReadAsync(ct))
                {
                    var e = new Row(reader);
                    if (count++ == 0 && !reader.IsDBNull(14)) head = (reader.GetInt64(14), reader.GetFieldValue<byte[]>(15));
                    var problem =
                        e.Seq != lastSeq + 1 ? "missing_event"
                        : !e.PrevHash.AsSpan().SequenceEqual(lastHash) ? "broken_link"
                        : !e.HashOk ? "hash_mismatch"
                        : MacProblem(tenant, e, ref keyed, ref unkeyed)
                          ?? (e.EventId is { } id && !ids.Add(id) ? "duplicate_event" : null)
                          ?? (anchored.TryGetValue(e.Seq, out var hash) && !hash.AsSpan().SequenceEqual(e.Hash) ? "anchor_mismatch" : null);
                    lastSeq = e.Seq;
                    lastHash = e.Hash;
                    if (problem is not null)
                    {
                        Found(e.Seq, problem);
                        break;
                    }
                }
            }
            if (broken is { } early && early.Seq <= lastSeq) return Invalid(early, count, tenantAnchors.Count, unkeyed);

            // The chain read to its end: it must end where the head says and reach every anchor.
            if (count == 0) head = await HeadAsync(connection, tenant, ct);
            if (anchored.Keys.Any(seq => seq > lastSeq)) Found(lastSeq + 1, "anchor_mismatch");
            var headSeq = head?.Seq ?? 0;
            if (headSeq < lastSeq) Found(headSeq + 1, "beyond_head");
            else if (headSeq > lastSeq || (lastSeq > 0 && !head!.Value.Hash.AsSpan().SequenceEqual(lastHash))) Found(lastSeq + 1, "missing_tail");
            if (broken is { } late) return Invalid(late, count, tenantAnchors.Count, unkeyed);
            return new Response(true, count, null, null, tenantAnchors.Count, unkeyed);
        }

        private static Response Invalid((long Seq, string Problem) broken, long count, long anchorCount, long unkeyed) =>
            new(false, count, broken.Seq, broken.Problem, anchorCount, unkeyed);

        /// <summary>
        /// An event's MAC must hold under the key it names. An event without one is accepted only before the chain's
        /// first keyed event: the events written before migration 0015.
        /// </summary>
        private string? MacProblem(string tenant, Row e, ref bool keyed, ref long unkeyed)
        {
            if (e.Mac is null || e.KeyId is null || e.EventId is null)
            {
                if (keyed) return "unkeyed_event";
                unkeyed++;
                return null;
            }
            keyed = true;
            if (!keys.TryGetEventKey(e.KeyId, out var key)) return "unknown_key";
            using var document = JsonDocument.Parse(e.Details);
            var expected = AuditKeys.EventMac(key, tenant, e.EventId.Value, AuditTrail.Micros(e.OccurredAt), e.Actor, e.Action,
                e.SubjectType, e.SubjectId, e.CorrelationId, CanonicalJson.Transient(document.RootElement, normalizeNumbers: true));
            return CryptographicOperations.FixedTimeEquals(expected, e.Mac) ? null : "mac_mismatch";
        }

        private static async Task<(long Seq, byte[] Hash)?> HeadAsync(NpgsqlConnection connection, string tenant, CancellationToken ct)
        {
            await using var command = new NpgsqlCommand(HeadSql, connection);
            command.Parameters.Add(new NpgsqlParameter { Value = tenant });
            await using var reader = await command.ExecuteReaderAsync(ct);
            return await reader.ReadAsync(ct) ? (reader.GetInt64(0), reader.GetFieldValue<byte[]>(1)) : null;
        }
    }

    private sealed class Row(NpgsqlDataReader r)
    {
        public long Seq { get; } = r.GetInt64(0);
        public Guid? EventId { get; } = r.IsDBNull(1) ? null : r.GetGuid(1);
        public DateTime OccurredAt { get; } = DateTime.SpecifyKind(r.GetDateTime(2), DateTimeKind.Utc);
        public string Actor { get; } = r.GetString(3);
        public string Action { get; } = r.GetString(4);
        public string SubjectType { get; } = r.GetString(5);
        public string SubjectId { get; } = r.GetString(6);
        public string? CorrelationId { get; } = r.IsDBNull(7) ? null : r.GetString(7);
        public string Details { get; } = r.GetString(8);
        public string? KeyId { get; } = r.IsDBNull(9) ? null : r.GetString(9);
        public byte[]? Mac { get; } = r.IsDBNull(10) ? null : r.GetFieldValue<byte[]>(10);
        public byte[] PrevHash { get; } = r.GetFieldValue<byte[]>(11);
        public byte[] Hash { get; } = r.GetFieldValue<byte[]>(12);
        public bool HashOk { get; } = r.GetBoolean(13);
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPost("/verify", async (IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("Recompute the tenant's audit chain (positions, links, hashes, MACs) and check it against its anchors; report the first event that does not hold.")
            .Produces<Response>();
}
