using Integrations.Common;
using Integrations.Features.Audit;
using Integrations.Features.Credentials;
using Integrations.Features.Datasources;
using Integrations.Tests.Support;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Tests.Datasources;

/// <summary>
/// The seeded database made as dangerous as a careless datasource can be: its role may write <c>t</c>, and it holds
/// <c>dblink</c> (a connection of its own, made by the server, outside our READ ONLY transaction), <c>postgres_fdw</c>
/// with a foreign table, and user-defined functions, a view, an operator, casts and a row-security policy that each
/// delete every row of <c>t</c> through dblink when they run.
/// </summary>
public sealed class AttackFixture : IAsyncLifetime
{
    public DatasourceFixture Datasources { get; } = new();

    /// <summary>A libpq connection string back into the datasource as its (writing) role: what dblink is given.</summary>
    public string Loopback { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        await Datasources.InitializeAsync();
        var target = Datasources.Target;
        Loopback = $"host={target.Host} port={target.Port} dbname={target.Database} user={target.Role} password={target.Password}";
        var wipe = $"SELECT dblink_exec('{Loopback}', 'DELETE FROM t')";
        await OwnerSql.ExecuteAsync(target.AdminConnectionString, $"""
            CREATE EXTENSION dblink;
            CREATE EXTENSION postgres_fdw;
            CREATE EXTENSION pg_trgm;
            GRANT INSERT, UPDATE, DELETE ON t TO "{target.Role}";
            CREATE FUNCTION public.evil() RETURNS text LANGUAGE sql AS $$ {wipe} $$;
            CREATE FUNCTION public.evil_immutable() RETURNS text LANGUAGE sql IMMUTABLE AS $$ {wipe} $$;
            CREATE FUNCTION public.evil_check(integer) RETURNS boolean LANGUAGE sql AS $$ {wipe} IS NOT NULL $$;
            CREATE FUNCTION public.evil_eq(integer, integer) RETURNS boolean LANGUAGE sql AS $$ {wipe} IS NOT NULL $$;
            CREATE OPERATOR public.=== (LEFTARG = integer, RIGHTARG = integer, FUNCTION = public.evil_eq);
            CREATE FUNCTION public.lower(integer) RETURNS text LANGUAGE sql AS $$ {wipe} $$;
            CREATE TYPE public.mood AS ENUM ('ok', 'bad');
            CREATE FUNCTION public.mood_of(integer) RETURNS public.mood LANGUAGE sql AS $$ SELECT CASE WHEN ({wipe}) IS NOT NULL THEN 'bad'::public.mood END $$;
            CREATE CAST (integer AS public.mood) WITH FUNCTION public.mood_of(integer);
            CREATE FUNCTION public.mood_json(public.mood) RETURNS json LANGUAGE sql AS $$ SELECT to_json(({wipe})) $$;
            CREATE CAST (public.mood AS json) WITH FUNCTION public.mood_json(public.mood);
            CREATE VIEW public.v_evil AS SELECT id, public.evil() AS wiped FROM t;
            GRANT SELECT ON public.v_evil TO "{target.Role}";
            CREATE TABLE public.guarded (id integer);
            INSERT INTO public.guarded VALUES (1);
            ALTER TABLE public.guarded ENABLE ROW LEVEL SECURITY;
            CREATE POLICY everyone ON public.guarded USING (public.evil_check(id));
            GRANT SELECT ON public.guarded TO "{target.Role}";
            CREATE SERVER loopback FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '{target.Host}', port '{target.Port}', dbname '{target.Database}');
            CREATE USER MAPPING FOR "{target.Role}" SERVER loopback OPTIONS (user '{target.Role}', password '{target.Password}');
            CREATE FOREIGN TABLE public.remote_t (id integer, note text) SERVER loopback OPTIONS (table_name 't');
            GRANT SELECT ON public.remote_t TO "{target.Role}";
            """);
    }

    public Task DisposeAsync() => Datasources.DisposeAsync();
}

/// <summary>
/// The attack corpus of the SQL gateway (issue 18, finding 1): templates that would run SQL given as text, open
/// connections, touch files, large objects, sequences, locks or settings, or run user code hidden in a function,
/// view, operator, cast, domain or policy. Each is refused at definition; were one accepted, it is run with the
/// attacker's parameters, and the data must still be what it was.
/// </summary>
public sealed class SqlGatewayAttackTests(AttackFixture fixture) : IClassFixture<AttackFixture>
{
    private ServiceHost Host => fixture.Datasources.Host;
    private TargetDatabase Target => fixture.Datasources.Target;

    private static Datasource.Parameter P(string name, string type) => new(name, type);

    /// <summary>Every row of t, the sequence, the large objects and the advisory locks on this database: what an escape would change.</summary>
    private Task<string> StateAsync() => OwnerSql.ScalarAsync<string>(Target.AdminConnectionString, """
        SELECT (SELECT coalesce(string_agg(id || ':' || note, ',' ORDER BY id), '') FROM t)
            || '|' || (SELECT last_value || ':' || is_called FROM s)
            || '|' || (SELECT count(*) FROM pg_largeobject_metadata)
            || '|' || (SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
                       WHERE l.locktype = 'advisory' AND d.datname = current_database())
        """);

    public static TheoryData<string, string, string[]> Attacks() => new()
    {
        // SQL given as text, from the template, from an expression the lexer cannot read, or from the caller.
        { "SELECT * FROM ts_stat(@q)", "ts_stat", ["q=SELECT to_tsvector(dblink_exec('{loopback}', 'DELETE FROM t'))"] },
        { "SELECT * FROM ts_stat(concat('SELECT to_tsvector(dblink_exec(''{loopback}'', ''DELETE ', 'FROM t''))'))", "ts_stat", [] },
        { "SELECT query_to_xml(@q, true, true, '')", "query_to_xml", ["q=SELECT dblink_exec('{loopback}', 'DELETE FROM t')"] },
        { "SELECT xpath('/row', query_to_xml(concat('SELECT 1 WHERE ', @q), true, true, ''))", "query_to_xml", ["q=dblink_exec('{loopback}', 'DELETE FROM t') IS NOT NULL"] },
        { "SELECT table_to_xml('t', true, true, '')", "table_to_xml", [] },
        { "SELECT ts_rewrite('a'::tsquery, @q)", "ts_rewrite", ["q=SELECT 'a'::tsquery, 'b'::tsquery FROM dblink_exec('{loopback}', 'DELETE FROM t')"] },
        // Connections the database server opens.
        { "SELECT dblink_exec('{loopback}', 'DELETE FROM t')", "dblink_exec", [] },
        { "SELECT * FROM public.dblink(@c, @q) AS x(n text)", "dblink", ["c={loopback}", "q=SELECT 1 FROM dblink_exec('{loopback}', 'DELETE FROM t')"] },
        { "SELECT * FROM remote_t", "remote_t", [] },
        // Files, large objects, sequences, locks, settings.
        { "SELECT pg_read_file('/etc/passwd')", "pg_read_file", [] },
        { "SELECT pg_catalog.pg_ls_dir('.')", "pg_ls_dir", [] },
        { "SELECT lo_import('/etc/hostname')", "lo_import", [] },
        { "SELECT lo_from_bytea(0, 'x'::bytea)", "lo_from_bytea", [] },
        { "SELECT nextval('s')", "nextval", [] },
        { "SELECT setval('s', 100)", "setval", [] },
        { "SELECT pg_advisory_lock(1)", "pg_advisory_lock", [] },
        { "SELECT pg_try_advisory_xact_lock(@k)", "pg_try_advisory_xact_lock", ["k=1"] },
        { "SELECT set_config('default_transaction_read_only', 'off', false)", "set_config", [] },
        { "SELECT current_setting(@name)", "current_setting", ["name=data_directory"] },
        { "SELECT pg_sleep_for('1 minute')", "pg_sleep_for", [] },
        // User code behind a function, a shadowing overload, a planner-folded function, a view, an operator, casts, a policy.
        { "SELECT evil()", "evil()", [] },
        { "SELECT lower(1)", "lower(integer)", [] },
        { "SELECT evil_immutable()", "evil_immutable()", [] },
        { "SELECT * FROM v_evil", "evil()", [] },
        { "SELECT 1 === 2", "evil_eq(integer,integer)", [] },
        { "SELECT 1::mood", "mood_of(integer)", [] },
        { "SELECT to_json('ok'::mood)", "mood", [] },
        { "SELECT * FROM guarded", "evil_check(integer)", [] },
        { "SELECT similarity('a', 'b')", "similarity", [] },
    };

    [Theory]
    [MemberData(nameof(Attacks))]
    public async Task Each_attack_is_refused_at_definition_and_the_data_is_unchanged(string sql, string named, string[] arguments)
    {
        sql = sql.Replace("{loopback}", fixture.Loopback);
        var values = arguments.Select(a => a.Split('=', 2)).ToDictionary(a => a[0], a => a[1].Replace("{loopback}", fixture.Loopback));
        var tenant = TestEnvironment.NewTenant();
        var datasource = await fixture.Datasources.RegisterAsync(tenant);
        var before = await StateAsync();

        var defined = await Host.SendAsync(new DefineQuery.Command(datasource.Id, "attack", sql,
            values.Keys.Select(p => P(p, p == "k" ? "bigint" : "text")).ToList()), tenant);
        if (defined.IsSuccess)
        {
            await Host.SendAsync(new RunQuery.Command(datasource.Id, "attack", DatasourceSliceTests.Args(
                values.ToDictionary(v => v.Key, v => v.Key == "k" ? (object)long.Parse(v.Value) : v.Value))), tenant);
        }

        Assert.Equal(before, await StateAsync());
        Assert.Equal("validation_failed", defined.Error?.Code);
        Assert.Contains(named, defined.Error!.FieldErrors!["sql"][0]);
    }

    [Fact]
    public async Task A_domain_whose_check_runs_user_code_refuses_every_template_before_any_is_parsed()
    {
        var tenant = TestEnvironment.NewTenant();
        var datasource = await fixture.Datasources.RegisterAsync(tenant);
        var before = await StateAsync();
        await OwnerSql.ExecuteAsync(Target.AdminConnectionString, "CREATE DOMAIN public.d_evil AS integer CHECK (public.evil_check(VALUE))");
        try
        {
            // Parsing the literal array already runs the domain's CHECK (array_in, then domain_in).
            foreach (var sql in new[] { "SELECT '{1}'::d_evil[]", "SELECT 1::d_evil", "SELECT 1 AS harmless" })
            {
                var defined = await Host.SendAsync(new DefineQuery.Command(datasource.Id, "attack", sql), tenant);

                Assert.Equal(before, await StateAsync());
                Assert.Equal("validation_failed", defined.Error?.Code);
                Assert.Contains("d_evil", defined.Error!.FieldErrors!["sql"][0]);
                Assert.Contains("evil_check(integer)", defined.Error.FieldErrors["sql"][0]);
            }
        }
        finally
        {
            await OwnerSql.ExecuteAsync(Target.AdminConnectionString, "DROP DOMAIN public.d_evil");
        }
    }

    [Fact]
    public async Task Ordinary_reads_still_run_on_a_datasource_that_holds_all_of_this()
    {
        var tenant = TestEnvironment.NewTenant();
        var datasource = await fixture.Datasources.RegisterAsync(tenant);
        await fixture.Datasources.DefineAsync(tenant, datasource.Id, "report", """
            WITH c AS (SELECT id, name, tier, balance, signed_up, tags, profile FROM customers WHERE tier = @tier)
            SELECT tier, count(*) AS n, sum(balance)::text AS total, max(signed_up) AS last, string_agg(name, ',' ORDER BY id) AS names,
                   row_number() OVER (ORDER BY tier) AS r, coalesce(max(profile ->> 'n'), '-') AS top, upper(left(tier, 1)) AS initial,
                   array_length(array_agg(id), 1) AS ids, date_trunc('month', max(signed_up)::timestamp) AS month,
                   bool_or(tags && ARRAY['t1']) AS tagged, jsonb_build_object('tier', tier) AS doc
            FROM c GROUP BY tier HAVING count(*) > @min
            """, [P("tier", "text"), P("min", "integer")]);

        var result = await Host.SendAsync(new RunQuery.Command(datasource.Id, "report", DatasourceSliceTests.Args(new { tier = "pro", min = 1 })), tenant);

        Assert.True(result.IsSuccess, result.Error?.Detail);
        Assert.Equal(40, (long)result.Value.Rows[0][1]!);
    }
}

/// <summary>
/// Templates stored before the allow-list (guard_version 0) are checked again on start-up: the one that would run
/// SQL given as text is disabled with an audit event and the reason, for good; the ordinary one runs again; none
/// runs while unchecked. And extension functions run only where a datasource lists them.
/// </summary>
public sealed class StoredTemplateCheckTests(AttackFixture fixture) : IClassFixture<AttackFixture>
{
    private ServiceHost Host => fixture.Datasources.Host;
    private TargetDatabase Target => fixture.Datasources.Target;

    private Task<string> TableAsync() =>
        OwnerSql.ScalarAsync<string>(Target.AdminConnectionString, "SELECT coalesce(string_agg(id || ':' || note, ',' ORDER BY id), '') FROM t");

    private static async Task<Guid> StoreLegacyAsync(ServiceHost host, string tenant, Guid datasourceId, string name, string sql, string parameters = "[]")
    {
        var id = Guid.NewGuid();
        await OwnerSql.ExecuteAsync(host.ConnectionString, """
            INSERT INTO datasource_queries (id, tenant_id, datasource_id, name, sql, parameters, columns, row_limit, timeout_ms, enabled)
            VALUES (@id, @tenant, @datasourceId, @name, @sql, @parameters::jsonb, '[]', 100, 5000, true)
            """, new { id, tenant, datasourceId, name, sql, parameters });
        return id;
    }

    private Task<Result<RunQuery.Response>> RunAsync(string tenant, Guid datasourceId, string name, object? args = null) =>
        RunAsync(Host, tenant, datasourceId, name, args);

    private static Task<Result<RunQuery.Response>> RunAsync(ServiceHost host, string tenant, Guid datasourceId, string name, object? args = null) =>
        host.SendAsync(new RunQuery.Command(datasourceId, name, args is null ? null : DatasourceSliceTests.Args(args)), tenant);

    [Fact]
    public async Task A_stored_template_that_no_longer_passes_is_disabled_on_start_up_with_an_audit_event()
    {
        // A database of its own: no other test's host checks these templates first.
        await using var host = await ServiceHost.StartAsync(connectionString: await TestEnvironment.CreateMigratedDatabaseAsync("templates"));
        var tenant = TestEnvironment.NewTenant();
        var credential = await host.SendAsync(new StoreCredential.Command("db", "basic_auth", Username: Target.Role, Password: Target.Password), tenant);
        var datasource = (await host.SendAsync(new RegisterDatasource.Command("legacy", Target.Host, Target.Database, Target.Role,
            credential.Value.Reference, Port: Target.Port, TlsMode: "disable"), tenant)).Value;
        Assert.True((await host.SendAsync(new DefineQuery.Command(datasource.Id, "current", "SELECT count(*) AS n FROM t"), tenant)).IsSuccess);
        var evil = await StoreLegacyAsync(host, tenant, datasource.Id, "legacy-evil", "SELECT * FROM ts_stat(@q)", """[{"name": "q", "type": "text"}]""");
        var fine = await StoreLegacyAsync(host, tenant, datasource.Id, "legacy-fine", "SELECT id FROM t ORDER BY id");
        var attack = new { q = $"SELECT to_tsvector(dblink_exec('{fixture.Loopback}', 'DELETE FROM t'))" };
        var before = await TableAsync();

        var notYet = await RunAsync(host, tenant, datasource.Id, "legacy-evil", attack);
        Assert.Equal(("policy_denied", "template_unchecked"), (notYet.Error?.Code, notYet.Error?.Extensions?["rule"]));
        Assert.Equal("template_unchecked", (await RunAsync(host, tenant, datasource.Id, "legacy-fine")).Error?.Extensions?["rule"]);

        await host.Services.GetRequiredService<StoredTemplateCheck>().RunOnceAsync(CancellationToken.None);

        var disabled = Assert.Single((await host.SendAsync(new ListAuditEvents.Query(Action: RecheckQuery.Disabled), tenant)).Value.Items);
        Assert.Equal((Datasource.QuerySubjectType, evil.ToString()), (disabled.SubjectType, disabled.SubjectId));
        Assert.Contains("ts_stat", disabled.Details.GetProperty("reason").GetString());
        Assert.Equal(StoredTemplateCheck.Actor, disabled.Actor);
        var rechecked = Assert.Single((await host.SendAsync(new ListAuditEvents.Query(Action: RecheckQuery.Rechecked), tenant)).Value.Items);
        Assert.Equal(fine.ToString(), rechecked.SubjectId);

        var denied = await RunAsync(host, tenant, datasource.Id, "legacy-evil", attack);
        Assert.Equal("template_disabled", denied.Error?.Extensions?["rule"]);
        Assert.Equal([1, 2, 3], (await RunAsync(host, tenant, datasource.Id, "legacy-fine")).Value.Rows.Select(r => (int)r[0]!));
        Assert.Equal(before, await TableAsync());

        var listed = (await host.SendAsync(new ListQueries.Query(datasource.Id), tenant)).Value.Items.Single(q => q.Name == "legacy-evil");
        Assert.False(listed.Enabled);
        Assert.Contains("ts_stat", listed.DisabledReason);
        var enable = await host.SendAsync(new UpdateQuery.Command(datasource.Id, "legacy-evil", Enabled: true), tenant);
        Assert.Contains("enabled", enable.Error!.FieldErrors!.Keys);

        var again = await host.SendAsync(new RecheckQuery.Command(datasource.Id, "legacy-fine"), tenant);
        Assert.Equal(("conflict", 409), (again.Error?.Code, again.Error?.Status));

        // A second pass finds nothing left to do.
        await host.Services.GetRequiredService<StoredTemplateCheck>().RunOnceAsync(CancellationToken.None);
        Assert.Single((await host.SendAsync(new ListAuditEvents.Query(Action: RecheckQuery.Disabled), tenant)).Value.Items);
        Assert.Single((await host.SendAsync(new ListAuditEvents.Query(Action: RecheckQuery.Rechecked), tenant)).Value.Items);
    }

    [Fact]
    public async Task Extension_functions_run_only_where_the_datasource_lists_them_and_never_those_that_connect()
    {
        var tenant = TestEnvironment.NewTenant();
        var credential = await fixture.Datasources.StoreAsync(tenant, Target.Password, Target.Role);
        RegisterDatasource.Command Register(string name, params string[] functions) => new(name, Target.Host, Target.Database, Target.Role,
            credential.Reference, Port: Target.Port, TlsMode: "disable", AllowedFunctions: functions);

        foreach (var never in new[] { "public.dblink_exec", "public.dblink", "public.postgres_fdw_handler", "pg_catalog.pg_read_file", "similarity", "Public.X" })
        {
            var refused = await Host.SendAsync(Register("bad", never), tenant);
            Assert.Equal("validation_failed", refused.Error?.Code);
            Assert.Contains("allowed_functions[0]", refused.Error!.FieldErrors!.Keys);
        }

        var listing = (await Host.SendAsync(Register("trigram", "public.similarity", "public.evil"), tenant)).Value;
        Assert.Equal(["public.evil", "public.similarity"], listing.AllowedFunctions);
        var registered = Assert.Single((await Host.SendAsync(new ListAuditEvents.Query(Action: RegisterDatasource.Command.Operation), tenant)).Value.Items);
        Assert.Equal(2, registered.Details.GetProperty("allowed_functions").GetArrayLength());

        await fixture.Datasources.DefineAsync(tenant, listing.Id, "similar", "SELECT similarity(@a, 'customer') AS score", [new("a", "text")]);
        var score = await RunAsync(tenant, listing.Id, "similar", new { a = "customer" });
        Assert.Equal(1.0f, (float)score.Value.Rows[0][0]!);

        // Listed by name, but a function someone created is no extension's member: still refused.
        var userFunction = await Host.SendAsync(new DefineQuery.Command(listing.Id, "evil", "SELECT evil()"), tenant);
        Assert.Contains("evil()", userFunction.Error!.FieldErrors!["sql"][0]);

        var unlisted = await fixture.Datasources.RegisterAsync(tenant, "plain");
        var refusedThere = await Host.SendAsync(new DefineQuery.Command(unlisted.Id, "similar", "SELECT similarity('a', 'b')"), tenant);
        Assert.Contains("similarity(text,text)", refusedThere.Error!.FieldErrors!["sql"][0]);
    }
}
