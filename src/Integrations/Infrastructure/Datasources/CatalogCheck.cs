using Npgsql;
using NpgsqlTypes;

namespace Integrations.Infrastructure.Datasources;

/// <summary>
/// Resolves what a <see cref="ParseTree"/> refers to in the datasource's own catalog, by OID, and refuses anything
/// outside <see cref="FunctionAllowList"/>: functions (also aggregates' and window functions' support), operators
/// (their function and estimators), every type a value passes through (with their element, base, column and range
/// types: their input/output, typmod, subscript, range and cast functions), and foreign tables (also as partitions
/// or children) since reading one opens a connection from the datasource's server.
/// </summary>
public static class CatalogCheck
{
    public sealed record Refusal(string Kind, uint Oid, string Name);

    // OID 16384 is FirstNormalObjectId: below it, what initdb created; from it on, what anyone created since.
    private const string RefusalsSql = """
        WITH RECURSIVE types(oid) AS (
            SELECT t FROM unnest($6::oid[]) AS t WHERE t >= 16384
            UNION
            SELECT x.oid FROM types c JOIN pg_type t ON t.oid = c.oid
            CROSS JOIN LATERAL (
                SELECT t.typelem UNION ALL SELECT t.typbasetype
                UNION ALL SELECT a.atttypid FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
                UNION ALL SELECT r.rngsubtype FROM pg_range r WHERE r.rngtypid = t.oid OR r.rngmultitypid = t.oid) AS x(oid)
            WHERE x.oid >= 16384
        ),
        tables(oid) AS (
            SELECT r FROM unnest($7::oid[]) AS r
            UNION
            SELECT i.inhrelid FROM tables c JOIN pg_inherits i ON i.inhparent = c.oid
        ),
        type_functions(type, f) AS (
            SELECT t.oid, s.f FROM types c JOIN pg_type t ON t.oid = c.oid
            CROSS JOIN LATERAL (
                SELECT unnest(ARRAY[t.typinput, t.typoutput, t.typreceive, t.typsend, t.typmodin, t.typmodout, t.typsubscript]::oid[])
                UNION ALL SELECT unnest(ARRAY[r.rngcanonical, r.rngsubdiff]::oid[]) FROM pg_range r WHERE r.rngtypid = t.oid
                UNION ALL SELECT k.castfunc FROM pg_cast k WHERE k.castsource = t.oid OR k.casttarget = t.oid) AS s(f)
            WHERE s.f <> 0
        ),
        aggregate_functions(aggregate, f) AS (
            SELECT a.aggfnoid::oid, s FROM pg_aggregate a
            CROSS JOIN LATERAL unnest(ARRAY[a.aggtransfn, a.aggfinalfn, a.aggcombinefn, a.aggserialfn, a.aggdeserialfn,
                                            a.aggmtransfn, a.aggminvtransfn, a.aggmfinalfn]::oid[]) AS s
            WHERE a.aggfnoid::oid = ANY($4) AND s >= 16384
        ),
        needed(f) AS (
            SELECT unnest($4::oid[])
            UNION SELECT o.oprcode::oid FROM pg_operator o WHERE o.oid = ANY($5)
            UNION SELECT f FROM type_functions
            UNION SELECT f FROM aggregate_functions
        ),
        -- Materialized: the allow-list's test (signatures formatted, catalogs searched) runs on these few rows only.
        candidates AS MATERIALIZED (SELECT p.oid, p.proname, p.pronamespace FROM pg_proc p WHERE p.oid IN (SELECT f FROM needed)),
        allowed(oid) AS (
            SELECT p.oid FROM candidates p
            WHERE (p.oid < 16384 AND p.pronamespace = 'pg_catalog'::regnamespace
                   AND (p.proname = ANY($1) OR p.oid::regprocedure::text = ANY($1)
                        OR EXISTS (SELECT 1 FROM pg_operator o WHERE o.oprcode = p.oid AND o.oid < 16384)
                        OR EXISTS (SELECT 1 FROM pg_cast c WHERE c.castfunc = p.oid AND c.oid < 16384)
                        OR EXISTS (SELECT 1 FROM pg_type t WHERE t.oid < 16384 AND p.oid IN (t.typinput, t.typoutput,
                                   t.typreceive, t.typsend, t.typmodin, t.typmodout, t.typsubscript))))
               OR EXISTS (SELECT 1 FROM pg_namespace ns, pg_depend d, pg_extension e
                          WHERE ns.oid = p.pronamespace AND ns.nspname || '.' || p.proname = ANY($2)
                            AND d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
                            AND e.oid = d.refobjid AND e.extname <> ALL($3))
        )
        SELECT 'function', f, f::regprocedure::text FROM unnest($4::oid[]) AS f
        WHERE f NOT IN (SELECT oid FROM allowed)
        UNION ALL
        SELECT 'operator', w, w::regoperator::text FROM unnest($5::oid[]) AS w LEFT JOIN pg_operator o ON o.oid = w
        WHERE o.oid IS NULL OR o.oprcode::oid NOT IN (SELECT oid FROM allowed)
           OR o.oprrest::oid >= 16384 OR o.oprjoin::oid >= 16384
        UNION ALL
        SELECT 'aggregate', aggregate, aggregate::regprocedure::text FROM aggregate_functions
        WHERE f NOT IN (SELECT oid FROM allowed)
        UNION ALL
        SELECT 'type', type, type::regtype::text FROM type_functions WHERE f NOT IN (SELECT oid FROM allowed)
        UNION ALL
        SELECT 'relation', c.oid, c.oid::regclass::text FROM tables r JOIN pg_class c ON c.oid = r.oid WHERE c.relkind = 'f'
        """;

    /// <summary>Everything <paramref name="tree"/> refers to that may not run, as the datasource names it (empty when all may).</summary>
    public static async Task<IReadOnlyList<Refusal>> RefusalsAsync(NpgsqlConnection connection, NpgsqlTransaction transaction,
        ParseTree tree, IReadOnlyList<string> extensionFunctions, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(RefusalsSql, connection, transaction)
        {
            Parameters =
            {
                new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text, Value = FunctionAllowList.Builtins.ToArray() },
                new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text, Value = extensionFunctions.ToArray() },
                new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text, Value = FunctionAllowList.NeverExtensions.ToArray() },
                Oids(tree.Functions), Oids(tree.Operators), Oids(tree.Types), Oids(tree.Relations),
            },
        };
        var refusals = new List<Refusal>();
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            refusals.Add(new Refusal(reader.GetString(0), reader.GetFieldValue<uint>(1), reader.GetString(2)));
        }
        return refusals;
    }

    /// <summary>What a caller reads: the first refusal in a sentence, the others named after it.</summary>
    public static string Describe(IReadOnlyList<Refusal> refusals, string where = "The template")
    {
        var others = refusals.Skip(1).Select(r => r.Name).Distinct().Take(10).ToList();
        return Describe(refusals[0], where) + (others.Count > 0 ? $" Also refused: {string.Join(", ", others)}." : string.Empty);
    }

    private static string Describe(Refusal refusal, string where) => refusal.Kind switch
    {
        "function" => $"{where} calls {refusal.Name}, which is not on the gateway's allow-list: only listed built-in functions " +
                      "(and extension functions the datasource allows) run; nothing that executes SQL text, opens connections, " +
                      "touches files, large objects, sequences, locks or settings, and no user-defined function.",
        "operator" => $"{where} uses the operator {refusal.Name}, whose function is not on the gateway's allow-list.",
        "aggregate" => $"{where} uses the aggregate {refusal.Name}, whose support functions are not on the gateway's allow-list.",
        "type" => $"{where} passes values through the type {refusal.Name}, whose input, output or cast functions are not on the gateway's allow-list.",
        "relation" => $"{where} reads {refusal.Name}, a foreign table (or one with foreign partitions): reading it opens a connection from the datasource's server.",
        _ => $"{where} refers to {refusal.Name} ({refusal.Kind}), which is not allowed.",
    };

    private static NpgsqlParameter Oids(IReadOnlySet<uint> oids) =>
        new() { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Oid, Value = oids.ToArray() };
}
