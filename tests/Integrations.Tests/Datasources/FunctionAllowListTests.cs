using Integrations.Infrastructure.Datasources;
using Integrations.Tests.Support;

namespace Integrations.Tests.Datasources;

/// <summary>
/// The allow-list as the real server (the test cluster's PostgreSQL) resolves it, and the reading of parse-tree dumps:
/// what the operator, cast and type-I/O functions the list admits wholesale are, that every listed name exists, and
/// that an identifier in a dump cannot hide a reference.
/// </summary>
public sealed class FunctionAllowListTests
{
    // What is reached through built-in operators, casts and type I/O: the part of the list that is derived, not typed.
    private const string DerivedSql = """
        SELECT p.oid::regprocedure::text AS signature, p.proname AS name, p.provolatile AS volatility
        FROM pg_proc p
        WHERE p.oid < 16384 AND p.pronamespace = 'pg_catalog'::regnamespace
          AND p.oid IN (SELECT o.oprcode::oid FROM pg_operator o WHERE o.oid < 16384
                        UNION SELECT c.castfunc FROM pg_cast c WHERE c.oid < 16384
                        UNION SELECT unnest(ARRAY[t.typinput, t.typoutput, t.typreceive, t.typsend, t.typmodin, t.typmodout,
                                                  t.typsubscript]::oid[]) FROM pg_type t WHERE t.oid < 16384)
        """;

    private static readonly string[] DangerousPrefixes =
    [
        "dblink", "lo_", "pg_read", "pg_ls_", "pg_stat_file", "query_to", "cursor_to", "table_to", "schema_to", "database_to",
        "ts_stat", "ts_rewrite", "nextval", "setval", "currval", "lastval", "set_config", "current_setting", "pg_advisory",
        "pg_try_advisory", "pg_notify", "pg_terminate", "pg_cancel", "pg_reload", "pg_logical", "pg_replication", "pg_create",
        "pg_drop", "pg_import", "pg_switch", "pg_backup", "pg_promote", "pg_sleep_for", "pg_sleep_until", "setseed", "xpath",
    ];

    [Fact]
    public async Task What_operators_casts_and_type_io_admit_is_never_volatile_and_never_of_a_dangerous_family()
    {
        var derived = await OwnerSql.QueryAsync<(string Signature, string Name, char Volatility)>(TestEnvironment.AdminConnectionString, DerivedSql);

        Assert.True(derived.Count > 1000, $"only {derived.Count} derived functions: the query no longer reads the catalog as intended");
        Assert.Empty(derived.Where(f => f.Volatility == 'v').Select(f => f.Signature));
        Assert.Empty(derived.Where(f => DangerousPrefixes.Any(p => f.Name.StartsWith(p, StringComparison.Ordinal))).Select(f => f.Signature));
    }

    [Fact]
    public async Task Every_listed_built_in_exists_and_none_is_of_a_dangerous_family()
    {
        var known = await OwnerSql.QueryAsync<(string Name, string Signature, char Volatility)>(TestEnvironment.AdminConnectionString, """
            SELECT p.proname, p.oid::regprocedure::text, p.provolatile FROM pg_proc p
            WHERE p.oid < 16384 AND p.pronamespace = 'pg_catalog'::regnamespace
              AND (p.proname = ANY(@names) OR p.oid::regprocedure::text = ANY(@names))
            """, new { names = FunctionAllowList.Builtins.ToArray() });

        var missing = FunctionAllowList.Builtins.Where(b => known.All(k => k.Name != b && k.Signature != b)).ToList();
        Assert.Empty(missing);
        Assert.Empty(known.Where(k => DangerousPrefixes.Any(p => k.Name.StartsWith(p, StringComparison.Ordinal))).Select(k => k.Signature));
        // Volatile means "may change something or read the clock": only these, each harmless in a read.
        Assert.Empty(known.Where(k => k.Volatility == 'v').Select(k => k.Name).Distinct()
            .Except(["random", "clock_timestamp", "timeofday", "pg_sleep", "gen_random_uuid"]));
    }

    [Fact]
    public void Extension_function_names_are_qualified_and_never_of_a_family_that_connects_or_runs_sql_text()
    {
        Assert.Null(FunctionAllowList.ExtensionFunctionRefusal("public.similarity"));
        Assert.Null(FunctionAllowList.ExtensionFunctionRefusal("ext.hstore_to_json"));
        foreach (var refused in new[] { "similarity", "public.dblink_exec", "public.dblink", "x.postgres_fdw_handler", "pg_catalog.lower",
                     "information_schema.x", "pg_temp_3.f", "public.query_to_xml", "public.ts_stat", "public.lo_import", "Public.F", "a.b.c", "" })
        {
            Assert.NotNull(FunctionAllowList.ExtensionFunctionRefusal(refused));
        }
    }

    [Fact]
    public void A_dump_is_read_field_by_field_so_an_identifier_cannot_hide_a_reference()
    {
        // An alias crafted to look like the end of a string and of the node, with the real call after it.
        var tree = ParseTree.Read("""
            ({QUERY :commandType 1 :utilityStmt <> :hasModifyingCTE false :hasForUpdate false :rtable ({RANGETBLENTRY :alias
            {ALIAS :aliasname x\"\}\)\ :funcid\ 5 :colnames <>} :relid 16500}) :targetList ({TARGETENTRY :expr {FUNCEXPR
            :funcid 2614 :funcresulttype 25 :args ({CONST :consttype 17 :constvalue 4 [ 0 0 0 0 ]})} :resname a}) :sortClause
            ({SORTGROUPCLAUSE :eqop 98 :sortop 664}) :windowClause ({WINDOWCLAUSE :startInRangeFunc 0 :endInRangeFunc 1234})
            :rowMarks <> :coltypes (o 23 16400)})
            """);

        Assert.Equal([1234u, 2614u], tree.Functions.Order());
        Assert.Equal([98u, 664u], tree.Operators.Order());
        Assert.Superset(new HashSet<uint> { 25, 17, 23, 16400 }, tree.Types.ToHashSet());
        Assert.Equal([16500u], tree.Relations);
        Assert.Null(tree.ShapeRefusal());
    }

    [Theory]
    [InlineData("({QUERY :commandType 4 :utilityStmt <>})", "modifies data")]
    [InlineData("({QUERY :commandType 1 :utilityStmt {NOTIFYSTMT :conditionname x}})", "modifies data")]
    [InlineData("({QUERY :commandType 1 :utilityStmt <> :hasModifyingCTE true})", "locks rows or modifies data")]
    [InlineData("({QUERY :commandType 1 :utilityStmt <> :rowMarks ({ROWMARKCLAUSE :rti 1 :strength 4})})", "locks rows")]
    [InlineData("({QUERY :commandType 1 :utilityStmt <> :targetList ({TARGETENTRY :expr {NEXTVALUEEXPR :seqid 16400}})})", "NEXTVALUEEXPR")]
    [InlineData("({QUERY :commandType 1 :utilityStmt <> :rtable ({RANGETBLENTRY :tablefunc {TABLEFUNC :ns_uris <>}})})", "TABLEFUNC")]
    public void The_shape_of_a_read_is_checked_on_the_tree(string dump, string reason)
    {
        Assert.Contains(reason, ParseTree.Read(dump).ShapeRefusal());
    }
}
