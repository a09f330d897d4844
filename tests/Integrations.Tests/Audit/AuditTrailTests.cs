using Integrations.Features.Audit;
using Integrations.Features.Integrations;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Vault;
using Integrations.Tests.Support;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Integrations.Tests.Audit;

public sealed class AuditTrailTests(ServiceFixture fixture) : IClassFixture<ServiceFixture>
{
    private ServiceHost Host => fixture.Host;

    [Fact]
    public async Task Each_successful_write_leaves_exactly_one_audit_event_named_by_its_operation()
    {
        var tenant = TestEnvironment.NewTenant();
        // An encrypted:// reference made for this tenant directly (credentials.encrypt would add an event of its own).
        var reference = await Host.Services.GetRequiredService<VaultCrypto>().EncryptReferenceAsync("secret"u8.ToArray(), tenant, CancellationToken.None);
        var created = (await Host.SendAsync(new CreateIntegration.Command("a", "openai", CredentialRef: reference), tenant)).Value;
        await Host.SendAsync(new UpdateIntegration.Command(created.Id, new UpdateIntegration.Body(Name: "b")), tenant);
        await Host.SendAsync(new EnableIntegration.Command(created.Id), tenant);
        await Host.SendAsync(new DisableIntegration.Command(created.Id), tenant);
        await Host.SendAsync(new DeleteIntegration.Command(created.Id), tenant);
        await Host.SendAsync(new GetIntegration.Query(created.Id), tenant);
        await Host.SendAsync(new QueryIntegrations.Query(), tenant);

        var events = (await Host.SendAsync(new ListAuditEvents.Query(), tenant)).Value.Items;

        Assert.Equal(
            ["integrations.delete", "integrations.disable", "integrations.enable", "integrations.update", "integrations.create"],
            events.Select(e => e.Action));
        Assert.All(events, e => Assert.Equal(("integration", created.Id.ToString()), (e.SubjectType, e.SubjectId)));
        Assert.All(events, e => Assert.Equal($"test:{tenant}", e.Actor));
        Assert.Equal("encrypted://(redacted)", events[^1].Details.GetProperty("credential_ref").GetString());
    }

    [Fact]
    public async Task A_failing_write_leaves_no_audit_event()
    {
        var tenant = TestEnvironment.NewTenant();
        var created = (await Host.SendAsync(new CreateIntegration.Command("a", "openai"), tenant)).Value;
        await Host.SendAsync(new CreateIntegration.Command("b", "openai"), tenant);
        var before = await OwnerSql.AuditCountAsync(Host.ConnectionString, tenant);

        await Host.SendAsync(new CreateIntegration.Command("a", "openai"), tenant);                                   // conflict
        await Host.SendAsync(new UpdateIntegration.Command(created.Id, new UpdateIntegration.Body(Name: "b")), tenant); // unique violation
        await Host.SendAsync(new DisableIntegration.Command(created.Id), tenant);                                       // invalid transition
        await Host.SendAsync(new CreateIntegration.Command("", "nope"), tenant);                                        // validation
        await Host.SendAsync(new DeleteIntegration.Command(Guid.NewGuid()), tenant);                                     // not found

        Assert.Equal(before, await OwnerSql.AuditCountAsync(Host.ConnectionString, tenant));
    }

    [Theory]
    [InlineData("UPDATE audit_events SET actor = 'someone else'")]
    [InlineData("DELETE FROM audit_events")]
    [InlineData("TRUNCATE audit_events")]
    public async Task Audit_events_refuse_update_delete_and_truncate_even_for_the_owner(string sql)
    {
        var tenant = TestEnvironment.NewTenant();
        await Host.SendAsync(new CreateIntegration.Command("a", "openai"), tenant);

        var error = await Assert.ThrowsAsync<PostgresException>(() => OwnerSql.ExecuteAsync(Host.ConnectionString, sql));

        Assert.Contains("append-only", error.MessageText);
        Assert.Equal(1, await OwnerSql.AuditCountAsync(Host.ConnectionString, tenant));
    }

    [Fact]
    public async Task The_hash_chain_verifies_and_links_each_event_to_the_one_before()
    {
        var tenant = TestEnvironment.NewTenant();
        for (var i = 0; i < 5; i++) await Host.SendAsync(new CreateIntegration.Command($"n{i}", "openai"), tenant);

        var verified = (await Host.SendAsync(new VerifyAuditChain.Query(), tenant)).Value;
        var events = (await Host.SendAsync(new ListAuditEvents.Query(), tenant)).Value.Items;

        Assert.Equal(new VerifyAuditChain.Response(true, 5, null, null, 0, 0), verified);
        Assert.Equal([5L, 4, 3, 2, 1], events.Select(e => e.Seq));
        Assert.Equal(5, events.Select(e => e.Hash).Distinct().Count());
    }

    [Fact]
    public async Task Tampering_with_an_event_is_detected_at_that_event()
    {
        var tenant = TestEnvironment.NewTenant();
        for (var i = 0; i < 4; i++) await Host.SendAsync(new CreateIntegration.Command($"n{i}", "openai"), tenant);

        // An attacker with owner rights can bypass triggers; the chain still tells.
        await OwnerSql.ExecuteAsync(Host.ConnectionString, """
            SET session_replication_role = replica;
            UPDATE audit_events SET details = '{"name":"forged"}' WHERE tenant_id = @tenant AND seq = 3;
            """, new { tenant });

        // The event's hash covers its MAC, and the MAC its content (migration 0040): the MAC no longer holds.
        var verified = (await Host.SendAsync(new VerifyAuditChain.Query(), tenant)).Value;
        Assert.False(verified.Valid);
        Assert.Equal((3L, "mac_mismatch"), (verified.FirstBrokenSeq, verified.Problem));
    }

    [Fact]
    public async Task Deleting_events_is_detected()
    {
        var tenant = TestEnvironment.NewTenant();
        for (var i = 0; i < 4; i++) await Host.SendAsync(new CreateIntegration.Command($"n{i}", "openai"), tenant);

        await OwnerSql.ExecuteAsync(Host.ConnectionString,
            "SET session_replication_role = replica; DELETE FROM audit_events WHERE tenant_id = @tenant AND seq = 2", new { tenant });
        Assert.Equal((false, 3L), await VerifyAsync(tenant));

        await OwnerSql.ExecuteAsync(Host.ConnectionString,
            "SET session_replication_role = replica; DELETE FROM audit_events WHERE tenant_id = @tenant AND seq >= 2", new { tenant });
        Assert.Equal((false, 2L), await VerifyAsync(tenant));
    }

    [Fact]
    public async Task Several_events_of_one_write_take_consecutive_places_in_order_and_the_head_ends_at_the_last()
    {
        var tenant = TestEnvironment.NewTenant();
        await Host.SendAsync(new CreateIntegration.Command("first", "openai"), tenant);
        var batches = Host.Services.GetRequiredService<TenantBatches>();
        using var keys = AuditKeys.Use(Host.Services.GetRequiredService<AuditKeys>());

        await batches.WriteAsync(tenant, batch => AuditTrail.AddTo(batch, TestEnvironment.CallerFor(tenant),
            [new AuditEvent("test.one", "test", "1", new { n = 1 }), new AuditEvent("test.two", "test", "2", null), new AuditEvent("test.three", "test", "3", new { n = 3 })],
            "one-write"));

        var rows = await OwnerSql.QueryAsync<(long Seq, string Action, string? CorrelationId, byte[] PrevHash, byte[] Hash, DateTime OccurredAt)>(Host.ConnectionString,
            "SELECT seq, action, correlation_id, prev_hash, hash, occurred_at FROM audit_events WHERE tenant_id = @tenant ORDER BY seq", new { tenant });
        Assert.Equal([1L, 2, 3, 4], rows.Select(r => r.Seq));
        Assert.Equal(["test.one", "test.two", "test.three"], rows.Skip(1).Select(r => r.Action));
        Assert.All(rows.Skip(1), r => Assert.Equal("one-write", r.CorrelationId));
        for (var i = 1; i < rows.Count; i++) Assert.Equal(rows[i - 1].Hash, rows[i].PrevHash);
        Assert.Single(rows.Skip(1).Select(r => r.OccurredAt).Distinct());
        var head = await OwnerSql.QueryAsync<(long LastSeq, byte[] LastHash, byte[] PrevHash)>(Host.ConnectionString,
            "SELECT last_seq, last_hash, prev_hash FROM audit_chain_heads WHERE tenant_id = @tenant", new { tenant });
        Assert.Equal(4L, head[0].LastSeq);
        Assert.Equal(rows[3].Hash, head[0].LastHash);
        Assert.Equal(rows[2].Hash, head[0].PrevHash);
        Assert.Equal(new VerifyAuditChain.Response(true, 4, null, null, 0, 0), (await Host.SendAsync(new VerifyAuditChain.Query(), tenant)).Value);
    }

    [Fact]
    public async Task Audit_append_refuses_arrays_that_do_not_line_up()
    {
        var tenant = TestEnvironment.NewTenant();

        var error = await Assert.ThrowsAsync<PostgresException>(() => OwnerSql.ExecuteAsync(Host.ConnectionString,
            """
            SELECT audit_append(@tenant, ARRAY['key:a', 'key:b'], ARRAY[NULL, NULL]::text[], ARRAY['test.one'], ARRAY['test'], ARRAY['1'],
                                ARRAY['{}']::jsonb[], ARRAY[gen_random_uuid()], ARRAY[now()], 'k', ARRAY['\x00'::bytea])
            """,
            new { tenant }));

        Assert.Equal(PostgresErrorCodes.InvalidParameterValue, error.SqlState);
        Assert.Equal(0, await OwnerSql.AuditCountAsync(Host.ConnectionString, tenant));
    }

    [Fact]
    public async Task A_batch_of_writes_signed_under_two_keys_goes_in_as_one_statement_per_key_in_order_and_verifies()
    {
        var previousKey = MasterKeys.Generate();
        var previous = MasterKeys.Parse(previousKey, "old");
        await using var host = await ServiceHost.StartAsync(new Dictionary<string, string?> { ["Integrations:Vault:PreviousKeys:old"] = previousKey });
        var current = host.Services.GetRequiredService<AuditKeys>();
        var before = new AuditKeys(new MasterKeys(previous));
        var tenant = TestEnvironment.NewTenant();
        var caller = TestEnvironment.CallerFor(tenant);
        AuditWrite Signed(AuditKeys keys, string action)
        {
            using var _ = AuditKeys.Use(keys);
            return new AuditWrite(caller, [new AuditEvent(action, "test", action, new { action })]);
        }
        var writes = new[] { Signed(before, "test.a"), Signed(before, "test.b"), Signed(current, "test.c"), Signed(before, "test.d") };
        using (var statements = new NpgsqlBatch())
        {
            AuditTrail.AddTo(statements, tenant, writes);
            Assert.Equal(3, statements.BatchCommands.Count);
        }

        await host.Services.GetRequiredService<TenantBatches>().WriteAsync(tenant, batch => AuditTrail.AddTo(batch, tenant, writes));

        var rows = await OwnerSql.QueryAsync<(string Action, string KeyId)>(host.ConnectionString,
            "SELECT action, key_id FROM audit_events WHERE tenant_id = @tenant ORDER BY seq", new { tenant });
        Assert.Equal([("test.a", previous.Id), ("test.b", previous.Id), ("test.c", current.CurrentKeyId), ("test.d", previous.Id)], rows);
        Assert.Equal(new VerifyAuditChain.Response(true, 4, null, null, 0, 0), (await host.SendAsync(new VerifyAuditChain.Query(), tenant)).Value);
    }

    private async Task<(bool, long?)> VerifyAsync(string tenant)
    {
        var result = (await Host.SendAsync(new VerifyAuditChain.Query(), tenant)).Value;
        return (result.Valid, result.FirstBrokenSeq);
    }

    [Fact]
    public async Task Concurrent_writers_of_one_tenant_keep_one_unbroken_chain()
    {
        var tenant = TestEnvironment.NewTenant();

        await Task.WhenAll(Enumerable.Range(0, 20).Select(i => Host.SendAsync(new CreateIntegration.Command($"c{i}", "openai"), tenant)));

        var verified = (await Host.SendAsync(new VerifyAuditChain.Query(), tenant)).Value;
        Assert.Equal((true, 20L), (verified.Valid, verified.EventsChecked));
    }

    [Fact]
    public async Task Verifying_while_writers_commit_sees_one_consistent_chain()
    {
        var tenant = TestEnvironment.NewTenant();
        await Host.SendAsync(new CreateIntegration.Command("first", "openai"), tenant);

        var writers = Task.WhenAll(Enumerable.Range(0, 40).Select(i => Host.SendAsync(new CreateIntegration.Command($"w{i}", "openai"), tenant)));
        var verified = new List<VerifyAuditChain.Response>();
        while (!writers.IsCompleted) verified.Add((await Host.SendAsync(new VerifyAuditChain.Query(), tenant)).Value);
        await writers;
        verified.Add((await Host.SendAsync(new VerifyAuditChain.Query(), tenant)).Value);

        Assert.All(verified, v => Assert.True(v.Valid, $"{v.Problem} at {v.FirstBrokenSeq}"));
        Assert.Equal(41, verified[^1].EventsChecked);
    }

    [Fact]
    public async Task A_head_moved_back_over_events_that_are_still_there_is_reported()
    {
        var tenant = TestEnvironment.NewTenant();
        for (var i = 0; i < 3; i++) await Host.SendAsync(new CreateIntegration.Command($"n{i}", "openai"), tenant);

        await OwnerSql.ExecuteAsync(Host.ConnectionString, """
            UPDATE audit_chain_heads SET last_seq = 2, last_hash = (SELECT hash FROM audit_events WHERE tenant_id = @tenant AND seq = 2)
            WHERE tenant_id = @tenant
            """, new { tenant });

        var verified = (await Host.SendAsync(new VerifyAuditChain.Query(), tenant)).Value;
        Assert.Equal((false, 3L, "beyond_head"), (verified.Valid, verified.FirstBrokenSeq, verified.Problem));
    }

    [Fact]
    public async Task Audit_list_filters_by_action_and_subject_and_pages()
    {
        var tenant = TestEnvironment.NewTenant();
        var a = (await Host.SendAsync(new CreateIntegration.Command("a", "openai"), tenant)).Value;
        await Host.SendAsync(new CreateIntegration.Command("b", "openai"), tenant);
        await Host.SendAsync(new EnableIntegration.Command(a.Id), tenant);

        var enables = (await Host.SendAsync(new ListAuditEvents.Query(Action: "integrations.enable"), tenant)).Value.Items;
        Assert.Single(enables);
        var aEvents = (await Host.SendAsync(new ListAuditEvents.Query(SubjectType: "integration", SubjectId: a.Id.ToString()), tenant)).Value.Items;
        Assert.Equal(2, aEvents.Count);

        var first = (await Host.SendAsync(new ListAuditEvents.Query(Limit: 2), tenant)).Value;
        var second = (await Host.SendAsync(new ListAuditEvents.Query(Limit: 2, Cursor: first.NextCursor), tenant)).Value;
        Assert.Equal([3L, 2, 1], first.Items.Concat(second.Items).Select(e => e.Seq));
        Assert.Null(second.NextCursor);

        var future = (await Host.SendAsync(new ListAuditEvents.Query(From: DateTimeOffset.UtcNow.AddHours(1)), tenant)).Value;
        Assert.Empty(future.Items);
    }
}
