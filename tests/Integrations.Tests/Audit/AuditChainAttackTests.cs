using System.Buffers.Binary;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Dapper;
using Integrations.Features.Audit;
using Integrations.Features.Integrations;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Vault;
using Integrations.Tests.Support;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Integrations.Tests.Audit;

/// <summary>
/// The audit chain against whoever owns its tables (here the tests' superuser): triggers bypassed, events changed,
/// deleted and renumbered, and every later hash and the head recomputed with the database's own hash function. The
/// MACs (under a key PostgreSQL never sees) catch changed content; anchors kept outside the database catch what was
/// removed or moved before them.
/// </summary>
public sealed class AuditChainAttackTests(ServiceFixture fixture) : IClassFixture<ServiceFixture>
{
    private ServiceHost Host => fixture.Host;

    [Theory]
    [InlineData("details = '{\"name\":\"forged\"}'")]
    [InlineData("actor = 'someone-else'")]
    [InlineData("action = 'integrations.delete'")]
    [InlineData("subject_id = 'another-integration'")]
    [InlineData("correlation_id = 'another-call'")]
    [InlineData("occurred_at = occurred_at - interval '1 day'")]
    public async Task Changing_an_event_and_recomputing_every_later_hash_and_the_head_is_caught_by_its_mac(string change)
    {
        var tenant = await TenantWithEventsAsync(5);

        await AsOwnerAsync($"UPDATE audit_events SET {change} WHERE tenant_id = '{tenant}' AND seq = 3", Rechain(tenant));

        Assert.Equal((false, 3L, "mac_mismatch"), await VerifyAsync(tenant));
    }

    [Fact]
    public async Task Removing_an_events_mac_to_pass_it_off_as_written_before_the_chain_was_keyed_is_caught()
    {
        var tenant = await TenantWithEventsAsync(4);

        await AsOwnerAsync($$"""
            UPDATE audit_events SET details = '{"name":"forged"}', mac = NULL, key_id = NULL, event_id = NULL
            WHERE tenant_id = '{{tenant}}' AND seq >= 3
            """, Rechain(tenant));

        Assert.Equal((false, 3L, "unkeyed_event"), await VerifyAsync(tenant));
    }

    [Fact]
    public async Task Deleting_the_tail_and_fixing_the_head_is_caught_by_the_anchor()
    {
        var tenant = await TenantWithEventsAsync(6);
        await AnchorAsync(tenant, expectedSeq: 6);
        await WriteEventsAsync(tenant, 2);
        Assert.Equal((true, (long?)null, (string?)null), await VerifyAsync(tenant));

        await AsOwnerAsync($"DELETE FROM audit_events WHERE tenant_id = '{tenant}' AND seq >= 5", Rechain(tenant));

        Assert.Equal(4L, await OwnerSql.ScalarAsync<long>(Host.ConnectionString, "SELECT last_seq FROM audit_chain_heads WHERE tenant_id = @tenant", new { tenant }));
        Assert.Equal((false, 5L, "anchor_mismatch"), await VerifyAsync(tenant));
    }

    [Fact]
    public async Task Deleting_a_middle_event_and_renumbering_the_rest_is_caught_by_the_anchor_after_it()
    {
        var tenant = await TenantWithEventsAsync(3);
        await AnchorAsync(tenant, expectedSeq: 3);
        await WriteEventsAsync(tenant, 3);
        await AnchorAsync(tenant, expectedSeq: 6);

        await AsOwnerAsync($"DELETE FROM audit_events WHERE tenant_id = '{tenant}' AND seq = 2", Renumber(tenant), Rechain(tenant));

        Assert.Equal(5L, await OwnerSql.AuditCountAsync(Host.ConnectionString, tenant));
        Assert.Equal((false, 3L, "anchor_mismatch"), await VerifyAsync(tenant));
    }

    [Fact]
    public async Task Padding_a_renumbered_chain_back_to_its_anchored_length_with_a_copied_event_is_caught()
    {
        var tenant = await TenantWithEventsAsync(6);
        await AnchorAsync(tenant, expectedSeq: 6);

        await AsOwnerAsync(
            $"DELETE FROM audit_events WHERE tenant_id = '{tenant}' AND seq = 4",
            Renumber(tenant),
            $"""
            INSERT INTO audit_events (tenant_id, seq, occurred_at, actor, action, subject_type, subject_id, correlation_id, details,
                                      event_id, key_id, mac, prev_hash, hash)
            SELECT tenant_id, 6, occurred_at, actor, action, subject_type, subject_id, correlation_id, details, event_id, key_id, mac, prev_hash, hash
            FROM audit_events WHERE tenant_id = '{tenant}' AND seq = 5
            """,
            Rechain(tenant));

        Assert.Equal((false, 6L, "duplicate_event"), await VerifyAsync(tenant));
    }

    [Fact]
    public async Task A_chain_hashed_field_by_field_before_migration_0040_and_compactly_after_verifies_and_the_switch_is_pinned_by_its_head()
    {
        var tenant = await TenantWithEventsAsync(3);
        // What 0015's audit_append left behind, and where migration 0040 then set the head's switch.
        await AsOwnerAsync(Rechain(tenant, fieldByField: true), $"UPDATE audit_chain_heads SET compact_hashes_from = 4 WHERE tenant_id = '{tenant}'");
        await WriteEventsAsync(tenant, 2);

        Assert.Equal((true, (long?)null, (string?)null), await VerifyAsync(tenant));
        var rows = await OwnerSql.QueryAsync<(long Seq, byte[] PrevHash, string KeyId, byte[] Mac, byte[] Hash)>(Host.ConnectionString,
            "SELECT seq, prev_hash, key_id, mac, hash FROM audit_events WHERE tenant_id = @tenant AND seq >= 4 ORDER BY seq", new { tenant });
        Assert.All(rows, r =>
        {
            var seq = new byte[8];
            BinaryPrimitives.WriteInt64BigEndian(seq, r.Seq);
            Assert.Equal(SHA256.HashData([.. r.PrevHash, .. seq, .. Encoding.UTF8.GetBytes(r.KeyId), .. r.Mac]), r.Hash);
        });

        await AsOwnerAsync($"UPDATE audit_chain_heads SET compact_hashes_from = 1 WHERE tenant_id = '{tenant}'");
        Assert.Equal((false, 1L, "hash_mismatch"), await VerifyAsync(tenant));
    }

    [Fact]
    public async Task An_anchor_written_into_the_file_without_the_key_is_reported()
    {
        var tenant = await TenantWithEventsAsync(2);
        var anchors = Host.Services.GetRequiredService<AuditAnchorFile>();
        var hash = await OwnerSql.ScalarAsync<byte[]>(Host.ConnectionString, "SELECT hash FROM audit_events WHERE tenant_id = @tenant AND seq = 2", new { tenant });
        await File.AppendAllTextAsync(anchors.Path, JsonSerializer.Serialize(new
        {
            tenant_id = tenant,
            seq = 2,
            hash = Convert.ToHexStringLower(hash),
            anchored_at = DateTime.UtcNow,
            key_id = Host.Services.GetRequiredService<AuditKeys>().CurrentKeyId,
            mac = new string('0', 64),
        }) + "\n");

        Assert.Equal((false, 2L, "anchor_forged"), await VerifyAsync(tenant));
        Assert.Empty((await Host.SendAsync(new ListAuditAnchors.Query(), tenant)).Value.Items);
    }

    [Fact]
    public async Task Events_signed_under_a_previous_master_key_verify_while_that_key_is_configured()
    {
        var oldKey = MasterKeys.Generate();
        var newKey = MasterKeys.Generate();
        var anchorFile = Path.Combine(Path.GetTempPath(), "integrations-tests", $"anchors-{Guid.NewGuid():N}.jsonl");
        var tenant = TestEnvironment.NewTenant();
        await using (var before = await ServiceHost.StartAsync(new Dictionary<string, string?>
        {
            ["Integrations:Vault:MasterKey"] = oldKey,
            ["Integrations:Audit:AnchorFile"] = anchorFile,
        }))
        {
            for (var i = 0; i < 2; i++) await before.SendAsync(new CreateIntegration.Command($"old{i}", "openai"), tenant);
            await before.Services.GetRequiredService<AuditAnchoring>().RunOnceAsync(CancellationToken.None);
        }
        await using var after = await ServiceHost.StartAsync(new Dictionary<string, string?>
        {
            ["Integrations:Vault:MasterKey"] = newKey,
            ["Integrations:Vault:PreviousKeys:old"] = oldKey,
            ["Integrations:Audit:AnchorFile"] = anchorFile,
        });
        for (var i = 0; i < 2; i++) await after.SendAsync(new CreateIntegration.Command($"new{i}", "openai"), tenant);

        var keyIds = await OwnerSql.QueryAsync<string>(Host.ConnectionString, "SELECT key_id FROM audit_events WHERE tenant_id = @tenant ORDER BY seq", new { tenant });
        var oldId = MasterKeys.Parse(oldKey, "old").Id;
        var newId = MasterKeys.Parse(newKey, "new").Id;
        Assert.Equal([oldId, oldId, newId, newId], keyIds);
        Assert.Equal(new VerifyAuditChain.Response(true, 4, null, null, 1, 0), (await after.SendAsync(new VerifyAuditChain.Query(), tenant)).Value);

        // Once the old key is gone, what it signed can no longer be checked, and verification says so.
        await using var forgetful = await ServiceHost.StartAsync(new Dictionary<string, string?>
        {
            ["Integrations:Vault:MasterKey"] = newKey,
            ["Integrations:Audit:AnchorFile"] = anchorFile,
        });
        var verified = (await forgetful.SendAsync(new VerifyAuditChain.Query(), tenant)).Value;
        Assert.Equal((false, 1L, "unknown_key"), (verified.Valid, verified.FirstBrokenSeq, verified.Problem));
    }

    [Fact]
    public async Task The_service_logs_in_as_a_role_that_cannot_bypass_the_append_only_triggers()
    {
        var tenant = await TenantWithEventsAsync(1);
        await using var connection = await Host.DataSource.OpenConnectionAsync();

        Assert.Equal(TestEnvironment.ServiceRoleName, await connection.ExecuteScalarAsync<string>("SELECT current_user"));
        Assert.False(await connection.ExecuteScalarAsync<bool>(
            "SELECT pg_has_role(current_user, (SELECT tableowner FROM pg_tables WHERE tablename = 'audit_events'), 'MEMBER')"));
        foreach (var sql in new[]
                 {
                     "ALTER TABLE audit_events DISABLE TRIGGER append_only_rows",
                     "SET session_replication_role = replica",
                     $"UPDATE audit_events SET actor = 'x' WHERE tenant_id = '{tenant}'",
                     "SET ROLE integrations_app; SET app.tenant_id = 'x'; DELETE FROM audit_events",
                 })
        {
            var error = await Assert.ThrowsAsync<PostgresException>(() => connection.ExecuteAsync(sql));
            Assert.Equal(PostgresErrorCodes.InsufficientPrivilege, error.SqlState);
            await connection.ExecuteAsync("RESET ROLE");
        }
    }

    [Fact]
    public async Task Anchoring_writes_one_signed_anchor_per_moved_head_and_none_for_a_head_that_did_not_move()
    {
        var tenant = await TenantWithEventsAsync(2);
        var anchoring = Host.Services.GetRequiredService<AuditAnchoring>();

        Assert.Contains(await anchoring.RunOnceAsync(CancellationToken.None), a => a.TenantId == tenant && a.Seq == 2);
        Assert.DoesNotContain(await anchoring.RunOnceAsync(CancellationToken.None), a => a.TenantId == tenant);
        await WriteEventsAsync(tenant, 1);
        Assert.Contains(await anchoring.RunOnceAsync(CancellationToken.None), a => a.TenantId == tenant && a.Seq == 3);

        var listed = (await Host.SendAsync(new ListAuditAnchors.Query(Limit: 1), tenant)).Value;
        var next = (await Host.SendAsync(new ListAuditAnchors.Query(Limit: 1, Cursor: listed.NextCursor), tenant)).Value;
        Assert.Equal([3L, 2], listed.Items.Concat(next.Items).Select(a => a.Seq));
        Assert.Null(next.NextCursor);
        var hashes = await OwnerSql.QueryAsync<byte[]>(Host.ConnectionString, "SELECT hash FROM audit_events WHERE tenant_id = @tenant AND seq IN (2, 3) ORDER BY seq DESC", new { tenant });
        Assert.Equal(hashes.Select(Convert.ToHexStringLower), listed.Items.Concat(next.Items).Select(a => a.Hash));
        Assert.Empty((await Host.SendAsync(new ListAuditAnchors.Query(), TestEnvironment.NewTenant())).Value.Items);
    }

    private async Task<string> TenantWithEventsAsync(int count)
    {
        var tenant = TestEnvironment.NewTenant();
        await WriteEventsAsync(tenant, count);
        return tenant;
    }

    private async Task WriteEventsAsync(string tenant, int count)
    {
        for (var i = 0; i < count; i++) Assert.True((await Host.SendAsync(new CreateIntegration.Command($"i-{Guid.NewGuid():N}", "openai"), tenant)).IsSuccess);
    }

    private async Task AnchorAsync(string tenant, long expectedSeq) =>
        Assert.Contains(await Host.Services.GetRequiredService<AuditAnchoring>().RunOnceAsync(CancellationToken.None),
            a => a.TenantId == tenant && a.Seq == expectedSeq);

    private async Task<(bool, long?, string?)> VerifyAsync(string tenant)
    {
        var result = (await Host.SendAsync(new VerifyAuditChain.Query(), tenant)).Value;
        return (result.Valid, result.FirstBrokenSeq, result.Problem);
    }

    /// <summary>Runs <paramref name="statements"/> as the owner with triggers bypassed, in one transaction.</summary>
    private async Task AsOwnerAsync(params string[] statements)
    {
        await using var connection = new NpgsqlConnection(Host.ConnectionString);
        await connection.OpenAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await connection.ExecuteAsync("SET LOCAL session_replication_role = replica", transaction: transaction);
        foreach (var sql in statements) await connection.ExecuteAsync(sql, transaction: transaction);
        await transaction.CommitAsync();
    }

    /// <summary>Closes the gaps in the tenant's sequence numbers, in order.</summary>
    private static string Renumber(string tenant) => $$"""
        DO $$
        DECLARE r record; n bigint := 0;
        BEGIN
            FOR r IN SELECT seq FROM audit_events WHERE tenant_id = '{{tenant}}' ORDER BY seq LOOP
                n := n + 1;
                UPDATE audit_events SET seq = n WHERE tenant_id = '{{tenant}}' AND seq = r.seq;
            END LOOP;
        END $$
        """;

    /// <summary>
    /// What a table owner who knows the schema does after changing events: every hash recomputed in order with the
    /// database's own function (the one verification uses), and the head set to the new end of the chain. With
    /// <paramref name="fieldByField"/>, every keyed hash as migration 0015's audit_append made it, before 0040.
    /// </summary>
    private static string Rechain(string tenant, bool fieldByField = false) => $$"""
        DO $$
        DECLARE r record; prev bytea := decode(repeat('00', 32), 'hex'); before bytea := prev; h bytea; last bigint := 0;
        BEGIN
            FOR r IN SELECT e.*, head.compact_hashes_from FROM audit_events e JOIN audit_chain_heads head USING (tenant_id)
                     WHERE e.tenant_id = '{{tenant}}' ORDER BY e.seq LOOP
                h := audit_chain_hash(prev, r.tenant_id, r.seq, r.occurred_at, r.actor, r.action, r.subject_type, r.subject_id,
                                      r.correlation_id, r.details, r.event_id, r.key_id, r.mac, {{(fieldByField ? "r.seq + 1" : "r.compact_hashes_from")}});
                UPDATE audit_events SET prev_hash = prev, hash = h WHERE tenant_id = r.tenant_id AND seq = r.seq;
                before := prev;
                prev := h;
                last := r.seq;
            END LOOP;
            UPDATE audit_chain_heads SET last_seq = last, last_hash = prev, prev_hash = before WHERE tenant_id = '{{tenant}}';
        END $$
        """;
}
