using System.Text.Json;
using Integrations.Common;
using Integrations.Features.Audit;
using Integrations.Features.Credentials;
using Integrations.Features.Datasources;
using Integrations.Features.Policies;
using Integrations.Infrastructure.Datasources;
using Integrations.Infrastructure.Vault;
using Integrations.Tests.Support;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Tests.Datasources;

/// <summary>datasources.* through the real mediator pipeline, against a second real database reached with a least-privilege role.</summary>
public sealed class DatasourceSliceTests(DatasourceFixture fixture) : IClassFixture<DatasourceFixture>
{
    private ServiceHost Host => fixture.Host;
    private TargetDatabase Target => fixture.Target;

    internal static IReadOnlyDictionary<string, JsonElement> Args(object values) =>
        JsonSerializer.SerializeToElement(values).EnumerateObject().ToDictionary(p => p.Name, p => p.Value.Clone());

    private static Datasource.Parameter P(string name, string type) => new(name, type);

    private Task<Result<RunQuery.Response>> RunAsync(string tenant, Guid datasourceId, string name, object? args = null, params string[] scopes) =>
        Host.SendAsync(new RunQuery.Command(datasourceId, name, args is null ? null : Args(args)), tenant, scopes);

    private async Task<List<ListAuditEvents.Event>> AuditAsync(string tenant, string? action = null) =>
        (await Host.SendAsync(new ListAuditEvents.Query(Action: action, Limit: 200), tenant)).Value.Items.ToList();

    /// <summary>The newest query events (the vault's own credential.* events in between left out).</summary>
    private async Task<List<string>> QueryEventsAsync(string tenant, int count) =>
        (await AuditAsync(tenant)).Where(e => e.SubjectType == Datasource.QuerySubjectType).Take(count).Select(e => e.Action).ToList();

    [Fact]
    public async Task Register_test_define_and_query_with_typed_parameters()
    {
        var tenant = TestEnvironment.NewTenant();
        var registered = await fixture.RegisterAsync(tenant);
        Assert.Equal(("pending", 1000, 5000), (registered.Status, registered.RowLimit, registered.StatementTimeoutMs));

        var tested = await Host.SendAsync(new TestDatasource.Command(registered.Id), tenant);
        Assert.True(tested.Value.Status == "active", tested.Value.StatusMessage);
        Assert.Contains(Target.Role, tested.Value.StatusMessage);
        Assert.StartsWith("15", tested.Value.ServerVersion);

        var defined = await fixture.DefineAsync(tenant, registered.Id, "customers-by-tier",
            "SELECT id, name, balance, active, signed_up, tags, profile FROM customers WHERE tier = @tier AND id <= @max_id ORDER BY id",
            [P("tier", "text"), P("max_id", "integer")]);
        Assert.Equal(["id", "name", "balance", "active", "signed_up", "tags", "profile"], defined.Columns.Select(c => c.Name));
        Assert.Equal("integer", defined.Columns[0].Type);

        var result = await RunAsync(tenant, registered.Id, "customers-by-tier", new { tier = "pro", max_id = 10 });

        Assert.True(result.IsSuccess, result.Error?.Detail);
        var rows = result.Value.Rows;
        Assert.Equal([1, 4, 7, 10], rows.Select(r => (int)r[0]!));
        Assert.Equal("customer 4", (string)rows[1][1]!);
        Assert.Equal(42.0m, (decimal)rows[1][2]!);
        Assert.True((bool)rows[1][3]!);
        Assert.Equal("2024-01-05", (string)rows[1][4]!);
        Assert.Equal("t4", (string)rows[1][5]![0]!);
        Assert.Equal(4, (int)rows[1][6]!["n"]!);
        Assert.Equal((4, false), (result.Value.RowCount, result.Value.Truncated));
    }

    [Fact]
    public async Task Rows_are_capped_at_the_template_limit_and_reported_truncated()
    {
        var tenant = TestEnvironment.NewTenant();
        var datasource = await fixture.RegisterAsync(tenant, rowLimit: 50);
        await fixture.DefineAsync(tenant, datasource.Id, "all", "SELECT id FROM customers ORDER BY id");
        await fixture.DefineAsync(tenant, datasource.Id, "first-ten", "SELECT id FROM customers ORDER BY id", rowLimit: 10);
        await fixture.DefineAsync(tenant, datasource.Id, "exactly-three", "SELECT id FROM t", rowLimit: 3);

        var all = (await RunAsync(tenant, datasource.Id, "all")).Value;
        Assert.Equal((50, true, "row_limit"), (all.RowCount, all.Truncated, all.TruncatedReason));
        Assert.Equal(Enumerable.Range(1, 50), all.Rows.Select(r => (int)r[0]!));

        var ten = (await RunAsync(tenant, datasource.Id, "first-ten")).Value;
        Assert.Equal((10, true, "row_limit"), (ten.RowCount, ten.Truncated, ten.TruncatedReason));

        var three = (await RunAsync(tenant, datasource.Id, "exactly-three")).Value;
        Assert.Equal((3, false, null), (three.RowCount, three.Truncated, three.TruncatedReason));
        var completed = (await AuditAsync(tenant, RunQuery.Completed)).Select(e => e.Details.GetProperty("truncated_reason")).ToList();
        Assert.Equal([JsonValueKind.Null, JsonValueKind.String, JsonValueKind.String], completed.Select(r => r.ValueKind));
        Assert.Equal("row_limit", completed[1].GetString());
    }

    [Fact]
    public async Task A_slow_template_times_out_as_upstream_timeout_and_its_connection_goes_back_to_the_pool()
    {
        var tenant = TestEnvironment.NewTenant();
        var datasource = await fixture.RegisterAsync(tenant);
        await fixture.DefineAsync(tenant, datasource.Id, "slow", "SELECT pg_sleep(@seconds) AS slept", [P("seconds", "double")], timeoutMs: 300);
        await fixture.DefineAsync(tenant, datasource.Id, "fast", "SELECT count(*) AS n FROM t");

        var started = DateTime.UtcNow;
        var slow = await RunAsync(tenant, datasource.Id, "slow", new { seconds = 30 });

        Assert.Equal("upstream_timeout", slow.Error?.Code);
        Assert.Equal(504, slow.Error!.Status);
        Assert.Contains("300 ms", slow.Error.Detail);
        Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(10));
        var sessions = await Target.GatewaySessionsAsync(datasource.Id);
        Assert.All(sessions, s => Assert.Equal("idle", s.State));

        for (var i = 0; i < DatasourceConnections.MaxPoolSize + 2; i++)
        {
            Assert.Equal(3L, (long)(await RunAsync(tenant, datasource.Id, "fast")).Value.Rows[0][0]!);
        }
        Assert.Single(await Target.GatewaySessionsAsync(datasource.Id));

        var failed = Assert.Single(await AuditAsync(tenant, RunQuery.Failed));
        Assert.Equal("upstream_timeout", failed.Details.GetProperty("code").GetString());
    }

    public static TheoryData<string> RefusedTemplates() => new()
    {
        "SELECT 1; DROP TABLE t",
        "COMMIT; DELETE FROM t",
        "/* x */ DELETE FROM t",
        "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
        "SELECT pg_read_file('/etc/passwd')",
        "COPY t TO PROGRAM 'id'",
        "SET TRANSACTION READ WRITE",
        "SELECT nextval('s')",
        "SELECT * FROM dblink('host=127.0.0.1 dbname=postgres', 'SELECT 1') AS x(a int)",
    };

    [Theory]
    [MemberData(nameof(RefusedTemplates))]
    public async Task Define_refuses_anything_but_one_read_only_statement(string sql)
    {
        var tenant = TestEnvironment.NewTenant();
        var datasource = await fixture.RegisterAsync(tenant);

        var result = await Host.SendAsync(new DefineQuery.Command(datasource.Id, "evil", sql), tenant);

        Assert.Equal("validation_failed", result.Error?.Code);
        Assert.Contains("sql", result.Error!.FieldErrors!.Keys);
        Assert.Empty((await Host.SendAsync(new ListQueries.Query(datasource.Id), tenant)).Value.Items);
        Assert.Equal(0L, await OwnerSql.AuditCountAsync(Host.ConnectionString, tenant, DefineQuery.Command.Operation));
        Assert.Equal(3L, await Target.CountAsync("t"));
        Assert.Equal(1L, await OwnerSql.ScalarAsync<long>(Target.AdminConnectionString, "SELECT last_value FROM s"));
    }

    public static TheoryData<string, string> RefusedByTheDatasource() => new()
    {
        // Past the lexical wall on purpose: the datasource's own prepare and plan still refuse them.
        { "SELECT 1; SELECT 2", "multiple commands" },
        { "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "modifies data" },
        { "SELECT * FROM t FOR UPDATE", "locks rows" },
        { "SELECT pg_read_file('/etc/passwd')", "pg_read_file" },
        { "SELECT * FROM secrets", "permission denied" },
        { "SELECT * FROM no_such_table", "does not exist" },
    };

    [Theory]
    [MemberData(nameof(RefusedByTheDatasource))]
    public async Task The_datasource_itself_refuses_what_the_lexical_rules_might_miss(string sql, string reason)
    {
        var gateway = Host.Services.GetRequiredService<SqlGateway>();
        var target = Target.TargetFor(Guid.NewGuid());
        // Even a role that may write is held to reads.
        await OwnerSql.ExecuteAsync(Target.AdminConnectionString, $"GRANT INSERT, UPDATE, DELETE ON t TO \"{Target.Role}\"");
        try
        {
            var described = await gateway.DescribeAsync(target, DatasourceSignIn.WithPassword(Target.Password), new CheckedTemplate(sql, []), [], 2000, CancellationToken.None);

            Assert.Equal("validation_failed", described.Error?.Code);
            Assert.Contains(reason, described.Error!.FieldErrors!["sql"][0], StringComparison.OrdinalIgnoreCase);
            Assert.Equal(3L, await Target.CountAsync("t"));
        }
        finally
        {
            await OwnerSql.ExecuteAsync(Target.AdminConnectionString, $"REVOKE INSERT, UPDATE, DELETE ON t FROM \"{Target.Role}\"");
        }
    }

    [Fact]
    public async Task A_view_that_hides_a_denied_function_is_refused_from_the_plan()
    {
        var view = $"v_{Guid.NewGuid():N}";
        await OwnerSql.ExecuteAsync(Target.AdminConnectionString,
            $"CREATE VIEW {view} AS SELECT id, set_config('application_name', 'x', false) AS changed FROM t; GRANT SELECT ON {view} TO \"{Target.Role}\"");
        var tenant = TestEnvironment.NewTenant();
        var datasource = await fixture.RegisterAsync(tenant);

        var result = await Host.SendAsync(new DefineQuery.Command(datasource.Id, "hidden", $"SELECT * FROM {view}"), tenant);

        Assert.Equal("validation_failed", result.Error?.Code);
        Assert.Contains("set_config", result.Error!.FieldErrors!["sql"][0]);
    }

    [Fact]
    public async Task Even_the_run_itself_cannot_write_because_the_transaction_is_read_only()
    {
        // The role may use the sequence; only the READ ONLY transaction stops it.
        var gateway = Host.Services.GetRequiredService<SqlGateway>();

        var result = await gateway.RunAsync(Target.TargetFor(Guid.NewGuid()), DatasourceSignIn.WithPassword(Target.Password),
            new CheckedTemplate("SELECT nextval('s')", []), [], [], 10, 2000, CancellationToken.None);

        Assert.Equal("upstream_error", result.Error?.Code);
        Assert.Contains("read-only transaction", result.Error!.Detail);
        Assert.Equal(1L, await OwnerSql.ScalarAsync<long>(Target.AdminConnectionString, "SELECT last_value FROM s"));
        Assert.False(await OwnerSql.ScalarAsync<bool>(Target.AdminConnectionString, "SELECT is_called FROM s"));
    }

    [Fact]
    public async Task Injection_through_parameters_is_only_ever_a_value()
    {
        var tenant = TestEnvironment.NewTenant();
        var datasource = await fixture.RegisterAsync(tenant);
        await fixture.DefineAsync(tenant, datasource.Id, "by-note", "SELECT id FROM t WHERE note = @note", [P("note", "text")]);
        await fixture.DefineAsync(tenant, datasource.Id, "by-id", "SELECT id FROM t WHERE id = @id", [P("id", "integer")]);
        await fixture.DefineAsync(tenant, datasource.Id, "echo", "SELECT @value AS value", [P("value", "text")]);

        foreach (var attack in new[] { "'; DROP TABLE t; --", "1 OR 1=1", "' OR '1'='1", "one' --" })
        {
            Assert.Empty((await RunAsync(tenant, datasource.Id, "by-note", new { note = attack })).Value.Rows);
            Assert.Equal(attack, (string)(await RunAsync(tenant, datasource.Id, "echo", new { value = attack })).Value.Rows[0][0]!);
        }
        var notAnInteger = await RunAsync(tenant, datasource.Id, "by-id", new { id = "1 OR 1=1" });
        Assert.Equal("validation_failed", notAnInteger.Error?.Code);
        Assert.Contains("parameters.id", notAnInteger.Error!.FieldErrors!.Keys);
        Assert.Equal([1], (await RunAsync(tenant, datasource.Id, "by-id", new { id = 1 })).Value.Rows.Select(r => (int)r[0]!));

        Assert.Equal(3L, await Target.CountAsync("t"));
        Assert.Equal(TargetDatabase.CustomerCount, await Target.CountAsync("customers"));
    }

    [Fact]
    public async Task Parameters_must_match_the_declaration_exactly()
    {
        var tenant = TestEnvironment.NewTenant();
        var datasource = await fixture.RegisterAsync(tenant);
        await fixture.DefineAsync(tenant, datasource.Id, "typed",
            "SELECT @id::int AS id, @since::date AS since, @ids::int[] AS ids, @flag::boolean AS flag",
            [P("id", "integer"), P("since", "date"), P("ids", "integer[]"), P("flag", "boolean")]);

        var missing = await RunAsync(tenant, datasource.Id, "typed", new { id = 1, since = "2024-01-01", ids = new[] { 1 } });
        Assert.Equal(["parameters.flag"], missing.Error!.FieldErrors!.Keys);
        var extra = await RunAsync(tenant, datasource.Id, "typed", new { id = 1, since = "2024-01-01", ids = new[] { 1 }, flag = true, sql = "DROP" });
        Assert.Equal(["parameters.sql"], extra.Error!.FieldErrors!.Keys);
        var wrong = await RunAsync(tenant, datasource.Id, "typed", new { id = 1.5, since = "yesterday", ids = new object[] { 1, "x" }, flag = "yes" });
        Assert.Equal(["parameters.flag", "parameters.id", "parameters.ids", "parameters.since"], wrong.Error!.FieldErrors!.Keys.Order());

        var ok = await RunAsync(tenant, datasource.Id, "typed", new { id = (int?)null, since = "2024-02-29", ids = new int?[] { 1, null, 3 }, flag = false });
        Assert.True(ok.IsSuccess, ok.Error?.Detail);
        Assert.Null(ok.Value.Rows[0][0]);
        Assert.Equal("2024-02-29", (string)ok.Value.Rows[0][1]!);
        Assert.Equal("[1,null,3]", ok.Value.Rows[0][2]!.ToJsonString());
    }

    [Fact]
    public async Task Each_query_is_audited_requested_then_completed_with_hash_row_count_and_duration()
    {
        var tenant = TestEnvironment.NewTenant();
        var datasource = await fixture.RegisterAsync(tenant);
        var defined = await fixture.DefineAsync(tenant, datasource.Id, "by-tier", "SELECT id FROM customers WHERE tier = @tier", [P("tier", "text")]);

        await RunAsync(tenant, datasource.Id, "by-tier", new { tier = "enterprise" });

        var events = (await AuditAsync(tenant)).Where(e => e.SubjectType == Datasource.QuerySubjectType).Take(4).ToList();
        Assert.Equal([RunQuery.Completed, "datasource.query.started", "datasource.query.allowed", RunQuery.Requested], events.Select(e => e.Action));
        Assert.All(events, e => Assert.Equal((Datasource.QuerySubjectType, defined.Id.ToString()), (e.SubjectType, e.SubjectId)));
        var completed = events[0].Details;
        Assert.Equal("by-tier", completed.GetProperty("query").GetString());
        Assert.Equal(40, completed.GetProperty("row_count").GetInt32());
        Assert.True(completed.GetProperty("duration_ms").GetDouble() >= 0);
        Assert.Matches("^[0-9a-f]{64}$", completed.GetProperty("parameters_sha256").GetString());
        Assert.DoesNotContain("enterprise", completed.GetRawText());
        Assert.Equal(completed.GetProperty("parameters_sha256").GetString(), events[3].Details.GetProperty("parameters_sha256").GetString());
        Assert.All(events, e => Assert.Equal(events[0].CorrelationId, e.CorrelationId));

        var defineEvent = Assert.Single(await AuditAsync(tenant, DefineQuery.Command.Operation));
        Assert.Contains("WHERE tier = @tier", defineEvent.Details.GetProperty("sql").GetString());
        Assert.True((await Host.SendAsync(new VerifyAuditChain.Query(), tenant)).Value.Valid);
    }

    [Fact]
    public async Task A_disabled_template_is_denied_by_policy_and_the_denial_is_audited()
    {
        var tenant = TestEnvironment.NewTenant();
        var datasource = await fixture.RegisterAsync(tenant);
        await fixture.DefineAsync(tenant, datasource.Id, "q", "SELECT 1 AS one");

        var disabled = await Host.SendAsync(new UpdateQuery.Command(datasource.Id, "q", Enabled: false), tenant);
        Assert.False(disabled.Value.Enabled);
        var denied = await RunAsync(tenant, datasource.Id, "q");

        Assert.Equal(("policy_denied", 403), (denied.Error?.Code, denied.Error?.Status));
        Assert.Equal("template_disabled", denied.Error!.Extensions!["rule"]);
        var events = (await AuditAsync(tenant)).Take(2).ToList();
        Assert.Equal([RunQuery.Denied, RunQuery.Requested], events.Select(e => e.Action));
        Assert.Equal("template_disabled", events[0].Details.GetProperty("rule").GetString());

        await Host.SendAsync(new UpdateQuery.Command(datasource.Id, "q", Enabled: true), tenant);
        Assert.True((await RunAsync(tenant, datasource.Id, "q")).IsSuccess);
    }

    [Fact]
    public async Task The_tenant_deny_list_refuses_templates_by_name_or_by_datasource_and_template()
    {
        var tenant = TestEnvironment.NewTenant();
        var warehouse = await fixture.RegisterAsync(tenant, "warehouse");
        var other = await fixture.RegisterAsync(tenant, "other");
        foreach (var datasource in new[] { warehouse, other })
        {
            await fixture.DefineAsync(tenant, datasource.Id, "secret-report", "SELECT 1 AS one");
            await fixture.DefineAsync(tenant, datasource.Id, "public", "SELECT 2 AS two");
            await fixture.DefineAsync(tenant, datasource.Id, "everywhere", "SELECT 3 AS three");
        }
        var policy = await Host.SendAsync(new UpdateToolPolicy.Command(DenyList: ["warehouse/secret-*", "everywhere"]), tenant);
        Assert.True(policy.IsSuccess, policy.Error?.Detail);

        var denied = await RunAsync(tenant, warehouse.Id, "secret-report");
        Assert.Equal(("policy_denied", "deny_list"), (denied.Error?.Code, denied.Error?.Extensions?["rule"]));
        Assert.Equal("deny_list", (await AuditAsync(tenant, RunQuery.Denied))[0].Details.GetProperty("rule").GetString());
        Assert.Equal("policy_denied", (await RunAsync(tenant, warehouse.Id, "everywhere")).Error?.Code);
        Assert.Equal("policy_denied", (await RunAsync(tenant, other.Id, "everywhere")).Error?.Code);
        Assert.True((await RunAsync(tenant, other.Id, "secret-report")).IsSuccess, "the entry names the warehouse datasource only");
        Assert.True((await RunAsync(tenant, warehouse.Id, "public")).IsSuccess);

        await Host.SendAsync(new UpdateToolPolicy.Command(DenyList: [$"{warehouse.Id}/public"]), tenant);
        Assert.Equal("policy_denied", (await RunAsync(tenant, warehouse.Id, "public")).Error?.Code);
        Assert.True((await RunAsync(tenant, warehouse.Id, "secret-report")).IsSuccess);
    }

    [Fact]
    public async Task The_rate_limit_per_tenant_and_template_is_counted_in_the_database()
    {
        var tenant = TestEnvironment.NewTenant();
        var datasource = await fixture.RegisterAsync(tenant);
        await fixture.DefineAsync(tenant, datasource.Id, "limited", "SELECT 1 AS one", rateLimit: 3);
        await fixture.DefineAsync(tenant, datasource.Id, "other", "SELECT 2 AS two", rateLimit: 3);
        var otherTenant = TestEnvironment.NewTenant();
        var theirs = await fixture.RegisterAsync(otherTenant);
        await fixture.DefineAsync(otherTenant, theirs.Id, "limited", "SELECT 1 AS one", rateLimit: 3);
        // A minute boundary between calls would start a new window: begin early in one.
        while (DateTime.UtcNow.Second > 45) await Task.Delay(500);

        var results = await Task.WhenAll(Enumerable.Range(0, 5).Select(_ => RunAsync(tenant, datasource.Id, "limited")));

        Assert.Equal(3, results.Count(r => r.IsSuccess));
        var limited = results.Where(r => !r.IsSuccess).ToList();
        Assert.Equal(2, limited.Count);
        Assert.All(limited, r => Assert.Equal(("rate_limited", 429), (r.Error!.Code, r.Error.Status)));
        Assert.All(limited, r => Assert.InRange((int)r.Error!.Extensions!["retry_after_seconds"]!, 1, 60));
        Assert.True((await RunAsync(tenant, datasource.Id, "other")).IsSuccess, "another template has its own count");
        Assert.True((await RunAsync(otherTenant, theirs.Id, "limited")).IsSuccess, "another tenant has its own count");
        Assert.Equal(2, (await AuditAsync(tenant, RunQuery.Denied)).Count);
    }

    [Fact]
    public async Task A_template_without_its_own_limit_takes_the_policy_default_and_the_tenant_limit_caps_all_templates()
    {
        var tenant = TestEnvironment.NewTenant();
        var datasource = await fixture.RegisterAsync(tenant);
        await fixture.DefineAsync(tenant, datasource.Id, "a", "SELECT 1 AS one");
        await fixture.DefineAsync(tenant, datasource.Id, "b", "SELECT 2 AS two");
        await Host.SendAsync(new UpdateToolPolicy.Command(DefaultRateLimitPerMinute: 2, TenantRateLimitPerMinute: 3), tenant);
        while (DateTime.UtcNow.Second > 45) await Task.Delay(500);

        Assert.True((await RunAsync(tenant, datasource.Id, "a")).IsSuccess);
        Assert.True((await RunAsync(tenant, datasource.Id, "a")).IsSuccess);
        Assert.Equal("rate_limited", (await RunAsync(tenant, datasource.Id, "a")).Error?.Code);
        Assert.True((await RunAsync(tenant, datasource.Id, "b")).IsSuccess);
        var capped = await RunAsync(tenant, datasource.Id, "b");
        Assert.Equal("rate_limited", capped.Error?.Code);
        Assert.Contains("governed calls per minute", capped.Error!.Detail);
    }

    [Fact]
    public async Task Register_refuses_hosts_the_ssrf_guard_blocks_and_plaintext_to_untrusted_hosts()
    {
        var tenant = TestEnvironment.NewTenant();
        var reference = $"cus-vault://{tenant}/{Guid.NewGuid()}";

        foreach (var host in new[] { "10.0.0.5", "169.254.169.254", "192.168.1.10", "::ffff:127.0.0.1", "0.0.0.0",
            "64:ff9b:1::a00:5", "::ffff:0:a9fe:a9fe", "2001:0:808:808::80ff:fffe", "192.88.99.1", "[fd00::5]" })
        {
            var blocked = await Host.SendAsync(new RegisterDatasource.Command("db", host, "app", "reader", reference, TlsMode: "require"), tenant);
            Assert.Equal(("ssrf_blocked", 422), (blocked.Error?.Code, blocked.Error?.Status));
        }
        var plaintext = await Host.SendAsync(new RegisterDatasource.Command("db", "db.example.com", "app", "reader", reference, TlsMode: "disable"), tenant);
        Assert.Contains("tls_mode", plaintext.Error!.FieldErrors!.Keys);
        Assert.Empty((await Host.SendAsync(new ListDatasources.Query(), tenant)).Value.Items);
        Assert.Equal(0L, await OwnerSql.AuditCountAsync(Host.ConnectionString, tenant));
    }

    public static TheoryData<RegisterDatasource.Command, string> InvalidRegistrations() => new()
    {
        { new("", "127.0.0.1", "db", "u", "cus-vault://fixed-tenant/" + Guid.Empty), "name" },
        { new("n", "", "db", "u", "cus-vault://fixed-tenant/" + Guid.Empty), "host" },
        { new("n", "a,b", "db", "u", "cus-vault://fixed-tenant/" + Guid.Empty), "host" },
        { new("n", "host name", "db", "u", "cus-vault://fixed-tenant/" + Guid.Empty), "host" },
        { new("n", "127.0.0.1", "db", "u", "cus-vault://fixed-tenant/" + Guid.Empty, Port: 0), "port" },
        { new("n", "127.0.0.1", "", "u", "cus-vault://fixed-tenant/" + Guid.Empty), "database" },
        { new("n", "127.0.0.1", new string('d', 64), "u", "cus-vault://fixed-tenant/" + Guid.Empty), "database" },
        { new("n", "127.0.0.1", "db", "", "cus-vault://fixed-tenant/" + Guid.Empty), "username" },
        { new("n", "127.0.0.1", "db", "u", "hunter2-plaintext-password"), "credential_ref" },
        { new("n", "127.0.0.1", "db", "u", "env://PGPASSWORD"), "credential_ref" },
        { new("n", "127.0.0.1", "db", "u", "cus-vault://other-tenant/" + Guid.Empty), "credential_ref" },
        { new("n", "127.0.0.1", "db", "u", "cus-vault://fixed-tenant/" + Guid.Empty, Kind: "mysql"), "kind" },
        { new("n", "127.0.0.1", "db", "u", "cus-vault://fixed-tenant/" + Guid.Empty, TlsMode: "allow"), "tls_mode" },
        { new("n", "127.0.0.1", "db", "u", "cus-vault://fixed-tenant/" + Guid.Empty, RowLimit: 0), "row_limit" },
        { new("n", "127.0.0.1", "db", "u", "cus-vault://fixed-tenant/" + Guid.Empty, RowLimit: 10_001), "row_limit" },
        { new("n", "127.0.0.1", "db", "u", "cus-vault://fixed-tenant/" + Guid.Empty, StatementTimeoutMs: 99), "statement_timeout_ms" },
    };

    [Theory]
    [MemberData(nameof(InvalidRegistrations))]
    public async Task Register_rejects_each_invalid_field_with_its_name(RegisterDatasource.Command command, string field)
    {
        var result = await Host.SendAsync(command, "fixed-tenant");

        Assert.Equal("validation_failed", result.Error?.Code);
        Assert.Contains(field, result.Error!.FieldErrors!.Keys);
        Assert.DoesNotContain("hunter2", string.Join(" ", result.Error.FieldErrors.SelectMany(f => f.Value)));
    }

    [Fact]
    public async Task Test_records_failing_with_the_reason_when_the_datasource_cannot_be_reached_or_the_credential_resolved()
    {
        var tenant = TestEnvironment.NewTenant();
        var credential = await fixture.StoreAsync(tenant, "pw-irrelevant");
        var unreachable = await Host.SendAsync(new RegisterDatasource.Command("closed-port", "127.0.0.1", "db", "u",
            credential.Reference, Port: 1, TlsMode: "disable"), tenant);
        var tested = (await Host.SendAsync(new TestDatasource.Command(unreachable.Value.Id), tenant)).Value;
        Assert.Equal("failing", tested.Status);
        Assert.Contains("Could not connect", tested.StatusMessage);
        Assert.NotNull(tested.TestedAt);

        var revoked = await fixture.RegisterAsync(tenant, "revoked");
        await RevokeGrantAsync(tenant, revoked);
        var refused = (await Host.SendAsync(new TestDatasource.Command(revoked.Id), tenant)).Value;
        Assert.Equal("failing", refused.Status);
        Assert.Contains("credential could not be resolved", refused.StatusMessage);
        Assert.Contains("no grant", refused.StatusMessage);

        var missingDatabase = await fixture.RegisterAsync(tenant, "no-db");
        await OwnerSql.ExecuteAsync(Host.ConnectionString, "UPDATE datasources SET database = 'no_such_db' WHERE id = @Id", new { missingDatabase.Id });
        Assert.Contains("does not exist", (await Host.SendAsync(new TestDatasource.Command(missingDatabase.Id), tenant)).Value.StatusMessage);

        Assert.Equal(3, (await AuditAsync(tenant, TestDatasource.Command.Operation)).Count);
        var failing = (await Host.SendAsync(new ListDatasources.Query(Status: "failing"), tenant)).Value.Items;
        Assert.Equal(3, failing.Count);
    }

    private async Task RevokeGrantAsync(string tenant, Datasource.Response datasource)
    {
        var credentialId = CredentialReference.VaultCredentialId(datasource.CredentialRef)!.Value;
        var revoked = await Host.SendAsync(new RevokeCredentialGrant.Command(credentialId, CredentialAccessor.Datasource, datasource.Id), tenant);
        Assert.True(revoked.IsSuccess, revoked.Error?.Detail);
    }

    [Fact]
    public async Task Registering_with_a_vault_reference_grants_that_datasource_alone_and_deleting_it_drops_the_grant()
    {
        var tenant = TestEnvironment.NewTenant();
        var missing = await Host.SendAsync(new RegisterDatasource.Command("ghost", Target.Host, Target.Database, Target.Role,
            $"cus-vault://{tenant}/{Guid.NewGuid()}", Port: Target.Port, TlsMode: "disable"), tenant);
        Assert.Equal(("credential_not_found", 422), (missing.Error?.Code, missing.Error?.Status));
        Assert.Empty((await Host.SendAsync(new ListDatasources.Query(), tenant)).Value.Items);

        var datasource = await fixture.RegisterAsync(tenant);
        var grants = await OwnerSql.QueryAsync<(string, Guid)>(Host.ConnectionString,
            "SELECT accessor_type, accessor_id FROM credential_grants WHERE tenant_id = @tenant", new { tenant });
        Assert.Equal([(CredentialAccessor.Datasource, datasource.Id)], grants);
        Assert.Equal([RegisterDatasource.Command.Operation, CredentialGrants.GrantedAction],
            (await AuditAsync(tenant)).Take(2).Select(e => e.Action));

        Assert.True((await Host.SendAsync(new DeleteDatasource.Command(datasource.Id), tenant)).IsSuccess);
        Assert.Equal(0L, await OwnerSql.ScalarAsync<long>(Host.ConnectionString, "SELECT count(*) FROM credential_grants WHERE tenant_id = @tenant", new { tenant }));
    }

    [Fact]
    public async Task Without_a_granted_credential_nothing_runs_and_the_failure_is_audited()
    {
        var tenant = TestEnvironment.NewTenant();
        var datasource = await fixture.RegisterAsync(tenant);
        await fixture.DefineAsync(tenant, datasource.Id, "q", "SELECT 1 AS one");
        await RevokeGrantAsync(tenant, datasource);

        var result = await RunAsync(tenant, datasource.Id, "q");

        Assert.Equal(("credential_denied", 403), (result.Error?.Code, result.Error?.Status));
        Assert.Equal([RunQuery.Failed, "datasource.query.allowed", RunQuery.Requested], await QueryEventsAsync(tenant, 3));
        var log = await OwnerSql.QueryAsync<(string, string, string)>(Host.ConnectionString,
            "SELECT outcome, reason, operation FROM credential_access_log WHERE tenant_id = @tenant ORDER BY id DESC LIMIT 1", new { tenant });
        Assert.Equal([("denied", "no_grant", RunQuery.Command.Operation)], log);

        var undefined = await Host.SendAsync(new DefineQuery.Command(datasource.Id, "q2", "SELECT 2"), tenant);
        Assert.Equal("credential_denied", undefined.Error?.Code);
    }

    [Fact]
    public async Task List_filters_by_kind_and_status_and_pages_newest_first()
    {
        var tenant = TestEnvironment.NewTenant();
        var ids = new List<Guid>();
        for (var i = 0; i < 5; i++) ids.Add((await fixture.RegisterAsync(tenant, $"ds-{i}")).Id);
        await Host.SendAsync(new TestDatasource.Command(ids[2]), tenant);

        var first = (await Host.SendAsync(new ListDatasources.Query(Limit: 2), tenant)).Value;
        var second = (await Host.SendAsync(new ListDatasources.Query(Limit: 2, Cursor: first.NextCursor), tenant)).Value;
        var third = (await Host.SendAsync(new ListDatasources.Query(Limit: 2, Cursor: second.NextCursor), tenant)).Value;

        Assert.Equal(Enumerable.Reverse(ids), first.Items.Concat(second.Items).Concat(third.Items).Select(d => d.Id));
        Assert.Null(third.NextCursor);
        Assert.Equal([ids[2]], (await Host.SendAsync(new ListDatasources.Query(Status: "active"), tenant)).Value.Items.Select(d => d.Id));
        Assert.Equal(5, (await Host.SendAsync(new ListDatasources.Query(Kind: "postgres"), tenant)).Value.Items.Count);
        Assert.Equal("validation_failed", (await Host.SendAsync(new ListDatasources.Query(Status: "broken"), tenant)).Error?.Code);
        Assert.Equal("validation_failed", (await Host.SendAsync(new ListDatasources.Query(Cursor: "%%%"), tenant)).Error?.Code);
    }

    [Fact]
    public async Task Templates_list_in_pages_and_a_name_is_unique_per_datasource_until_deleted()
    {
        var tenant = TestEnvironment.NewTenant();
        var datasource = await fixture.RegisterAsync(tenant);
        for (var i = 0; i < 3; i++) await fixture.DefineAsync(tenant, datasource.Id, $"q{i}", $"SELECT {i} AS n");

        var page = (await Host.SendAsync(new ListQueries.Query(datasource.Id, Limit: 2), tenant)).Value;
        var rest = (await Host.SendAsync(new ListQueries.Query(datasource.Id, Limit: 2, Cursor: page.NextCursor), tenant)).Value;
        Assert.Equal(["q2", "q1", "q0"], page.Items.Concat(rest.Items).Select(q => q.Name));

        Assert.Equal("conflict", (await Host.SendAsync(new DefineQuery.Command(datasource.Id, "q1", "SELECT 9"), tenant)).Error?.Code);
        Assert.True((await Host.SendAsync(new DeleteQuery.Command(datasource.Id, "q1"), tenant)).IsSuccess);
        Assert.Equal("not_found", (await RunAsync(tenant, datasource.Id, "q1")).Error?.Code);
        await fixture.DefineAsync(tenant, datasource.Id, "q1", "SELECT 9 AS n");
        Assert.Equal(9, (int)(await RunAsync(tenant, datasource.Id, "q1")).Value.Rows[0][0]!);
        Assert.Equal("not_found", (await Host.SendAsync(new DeleteQuery.Command(datasource.Id, "nope"), tenant)).Error?.Code);
    }

    [Fact]
    public async Task Define_validates_names_parameters_and_limits()
    {
        var tenant = TestEnvironment.NewTenant();
        var datasource = await fixture.RegisterAsync(tenant);

        async Task<string[]> FieldsAsync(DefineQuery.Command command) =>
            (await Host.SendAsync(command, tenant)).Error?.FieldErrors?.Keys.ToArray() ?? [];

        Assert.Contains("name", await FieldsAsync(new(datasource.Id, "Bad Name", "SELECT 1")));
        Assert.Contains("sql", await FieldsAsync(new(datasource.Id, "q", "")));
        Assert.Contains("sql", await FieldsAsync(new(datasource.Id, "q", new string(' ', DefineQuery.MaxSqlLength + 1))));
        Assert.Contains("parameters[0].type", await FieldsAsync(new(datasource.Id, "q", "SELECT @a", [P("a", "money")])));
        Assert.Contains("parameters[0].name", await FieldsAsync(new(datasource.Id, "q", "SELECT 1", [P("1a", "text")])));
        Assert.Contains("parameters", await FieldsAsync(new(datasource.Id, "q", "SELECT @a", [P("a", "text"), P("a", "text")])));
        Assert.Contains("parameters", await FieldsAsync(new(datasource.Id, "q", "SELECT 1", [P("unused", "text")])));
        Assert.Contains("row_limit", await FieldsAsync(new(datasource.Id, "q", "SELECT 1", RowLimit: 0)));
        Assert.Contains("timeout_ms", await FieldsAsync(new(datasource.Id, "q", "SELECT 1", TimeoutMs: 500_000)));
        Assert.Contains("rate_limit_per_minute", await FieldsAsync(new(datasource.Id, "q", "SELECT 1", RateLimitPerMinute: -1)));
        Assert.Contains("sql", await FieldsAsync(new(datasource.Id, "q", "SELECT @a + 1", [P("a", "uuid")])));

        await fixture.DefineAsync(tenant, datasource.Id, "sleepy", "SELECT pg_sleep(0.2)", timeoutMs: 1000);
        var shorter = await Host.SendAsync(new UpdateQuery.Command(datasource.Id, "sleepy", TimeoutMs: 100), tenant);
        Assert.Contains("timeout_ms", shorter.Error!.FieldErrors!.Keys);
        var nothing = await Host.SendAsync(new UpdateQuery.Command(datasource.Id, "sleepy"), tenant);
        Assert.Contains("body", nothing.Error!.FieldErrors!.Keys);
    }

    [Fact]
    public async Task Delete_hides_the_datasource_and_its_templates_everywhere()
    {
        var tenant = TestEnvironment.NewTenant();
        var datasource = await fixture.RegisterAsync(tenant);
        await fixture.DefineAsync(tenant, datasource.Id, "q", "SELECT 1 AS one");

        Assert.True((await Host.SendAsync(new DeleteDatasource.Command(datasource.Id), tenant)).IsSuccess);

        Assert.Equal("not_found", (await Host.SendAsync(new GetDatasource.Query(datasource.Id), tenant)).Error?.Code);
        Assert.Equal("not_found", (await Host.SendAsync(new ListQueries.Query(datasource.Id), tenant)).Error?.Code);
        Assert.Equal("not_found", (await RunAsync(tenant, datasource.Id, "q")).Error?.Code);
        Assert.Equal("not_found", (await Host.SendAsync(new TestDatasource.Command(datasource.Id), tenant)).Error?.Code);
        Assert.Equal("not_found", (await Host.SendAsync(new DeleteDatasource.Command(datasource.Id), tenant)).Error?.Code);
        Assert.Empty((await Host.SendAsync(new ListDatasources.Query(), tenant)).Value.Items);
        Assert.Equal(1L, await OwnerSql.ScalarAsync<long>(Host.ConnectionString,
            "SELECT count(*) FROM datasource_queries WHERE datasource_id = @Id AND deleted_at IS NOT NULL", new { datasource.Id }));
        var deleted = Assert.Single(await AuditAsync(tenant, DeleteDatasource.Command.Operation));
        Assert.Equal(1, deleted.Details.GetProperty("templates_deleted").GetInt32());
    }

    [Fact]
    public async Task Another_tenants_datasources_templates_and_queries_are_not_found()
    {
        var owner = TestEnvironment.NewTenant();
        var intruder = TestEnvironment.NewTenant();
        var datasource = await fixture.RegisterAsync(owner);
        await fixture.DefineAsync(owner, datasource.Id, "q", "SELECT id FROM t");
        var before = await OwnerSql.AuditCountAsync(Host.ConnectionString, owner);

        Assert.Equal("not_found", (await Host.SendAsync(new GetDatasource.Query(datasource.Id), intruder)).Error?.Code);
        Assert.Empty((await Host.SendAsync(new ListDatasources.Query(), intruder)).Value.Items);
        Assert.Equal("not_found", (await Host.SendAsync(new TestDatasource.Command(datasource.Id), intruder)).Error?.Code);
        Assert.Equal("not_found", (await Host.SendAsync(new ListQueries.Query(datasource.Id), intruder)).Error?.Code);
        Assert.Equal("not_found", (await Host.SendAsync(new DefineQuery.Command(datasource.Id, "mine", "SELECT 1"), intruder)).Error?.Code);
        Assert.Equal("not_found", (await Host.SendAsync(new UpdateQuery.Command(datasource.Id, "q", Enabled: false), intruder)).Error?.Code);
        Assert.Equal("not_found", (await Host.SendAsync(new DeleteQuery.Command(datasource.Id, "q"), intruder)).Error?.Code);
        Assert.Equal("not_found", (await RunAsync(intruder, datasource.Id, "q")).Error?.Code);
        Assert.Equal("not_found", (await Host.SendAsync(new DeleteDatasource.Command(datasource.Id), intruder)).Error?.Code);

        Assert.True((await RunAsync(owner, datasource.Id, "q")).IsSuccess);
        // requested, allowed, credential.accessed, started, completed
        Assert.Equal(before + 5, await OwnerSql.AuditCountAsync(Host.ConnectionString, owner));
        // The intruder's own trail holds its refused query (requested, denied not_found); the owner's holds nothing of it.
        Assert.Equal(2L, await OwnerSql.AuditCountAsync(Host.ConnectionString, intruder));
    }

    [Fact]
    public async Task Scopes_read_for_lists_write_for_changes_invoke_for_queries()
    {
        var tenant = TestEnvironment.NewTenant();
        var datasource = await fixture.RegisterAsync(tenant);
        await fixture.DefineAsync(tenant, datasource.Id, "q", "SELECT 1 AS one");

        Assert.Equal("forbidden", (await RunAsync(tenant, datasource.Id, "q", null, Scopes.Read, Scopes.Write)).Error?.Code);
        Assert.True((await RunAsync(tenant, datasource.Id, "q", null, Scopes.Invoke)).IsSuccess);
        Assert.Equal("forbidden", (await Host.SendAsync(new DefineQuery.Command(datasource.Id, "q2", "SELECT 1"), tenant, Scopes.Read, Scopes.Invoke)).Error?.Code);
        Assert.True((await Host.SendAsync(new ListDatasources.Query(), tenant, Scopes.Read)).IsSuccess);
        Assert.Equal("unauthenticated", (await Host.SendAsync(new RunQuery.Command(datasource.Id, "q"), (Caller?)null)).Error?.Code);
    }
}
