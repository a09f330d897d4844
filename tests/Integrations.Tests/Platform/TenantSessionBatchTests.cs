using Integrations.Common;
using Integrations.Features.Audit;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Tests.Support;
using Npgsql;

namespace Integrations.Tests.Platform;

/// <summary>
/// <see cref="TenantSession.Batch"/>: a batch that is its own transaction in one round trip, as the app role with the
/// tenant pinned, all or nothing; and <see cref="AuditTrail.AddTo"/> appending several events in one such batch.
/// </summary>
public sealed class TenantSessionBatchTests(ServiceFixture fixture) : IClassFixture<ServiceFixture>
{
    private ServiceHost Host => fixture.Host;

    private static Caller CallerFor(string tenant) => TestEnvironment.CallerFor(tenant);

    [Fact]
    public async Task Commands_after_the_first_run_as_the_app_role_for_the_tenant_and_the_connection_is_clean_afterwards()
    {
        var tenant = TestEnvironment.NewTenant();
        await using var connection = await Host.DataSource.OpenConnectionAsync();
        var owner = (string)(await new NpgsqlCommand("SELECT current_user", connection).ExecuteScalarAsync())!;

        await using (var batch = TenantSession.Batch(connection, tenant))
        {
            batch.BatchCommands.Add(new NpgsqlBatchCommand("SELECT current_user, current_setting('app.tenant_id', true)"));
            await using var reader = await batch.ExecuteReaderAsync();
            Assert.True(await reader.NextResultAsync());
            Assert.True(await reader.ReadAsync());
            Assert.Equal((TenantSession.AppRole, tenant), (reader.GetString(0), reader.GetString(1)));
        }

        // The settings were local to the batch's transaction: the same connection is the owner again, with no tenant.
        await using var after = new NpgsqlCommand("SELECT current_user, coalesce(current_setting('app.tenant_id', true), '')", connection);
        await using var check = await after.ExecuteReaderAsync();
        Assert.True(await check.ReadAsync());
        Assert.Equal((owner, ""), (check.GetString(0), check.GetString(1)));
    }

    [Fact]
    public async Task A_failing_command_rolls_back_the_whole_batch()
    {
        using var signing = Host.SigningAuditEvents();
        var tenant = TestEnvironment.NewTenant();
        await using var connection = await Host.DataSource.OpenConnectionAsync();
        await using var batch = TenantSession.Batch(connection, tenant);
        AuditTrail.AddTo(batch, CallerFor(tenant), [new AuditEvent("test.first", "test", "1", null)]);
        // Row-level security: the app role may not write another tenant's rows.
        batch.BatchCommands.Add(new NpgsqlBatchCommand(
            "INSERT INTO cus_integrations (id, tenant_id, name, provider) VALUES (gen_random_uuid(), 'victim', 'x', 'openai')"));

        var error = await Assert.ThrowsAsync<PostgresException>(() => batch.ExecuteNonQueryAsync());

        Assert.Equal(PostgresErrorCodes.InsufficientPrivilege, error.SqlState);
        Assert.Equal(0L, await OwnerSql.AuditCountAsync(Host.ConnectionString, tenant));
        Assert.Equal(0L, await OwnerSql.ScalarAsync<long>(Host.ConnectionString, "SELECT count(*) FROM audit_chain_heads WHERE tenant_id = @tenant", new { tenant }));
    }

    [Fact]
    public async Task Several_events_in_one_batch_are_chained_in_order_after_what_was_there()
    {
        using var signing = Host.SigningAuditEvents();
        var tenant = TestEnvironment.NewTenant();
        await using (var connection = await Host.DataSource.OpenConnectionAsync())
        {
            await using var first = TenantSession.Batch(connection, tenant);
            AuditTrail.AddTo(first, CallerFor(tenant), [new AuditEvent("test.a", "test", "1", new { n = 1 })], "c1");
            await first.ExecuteNonQueryAsync();

            await using var second = TenantSession.Batch(connection, tenant);
            AuditTrail.AddTo(second, CallerFor(tenant),
                [new AuditEvent("test.b", "test", "1", new { n = 2 }), new AuditEvent("test.c", "test", "1", new { n = 3 }), new AuditEvent("test.d", "test", "1", null)],
                "c2");
            await second.ExecuteNonQueryAsync();
        }

        var events = await OwnerSql.QueryAsync<(long Seq, string Action, string Correlation)>(Host.ConnectionString,
            "SELECT seq, action, correlation_id FROM audit_events WHERE tenant_id = @tenant ORDER BY seq", new { tenant });
        Assert.Equal([(1L, "test.a", "c1"), (2L, "test.b", "c2"), (3L, "test.c", "c2"), (4L, "test.d", "c2")], events);
        var verified = await Host.SendAsync(new VerifyAuditChain.Query(), tenant);
        Assert.True(verified.Value.Valid, verified.Value.Problem);
        Assert.Equal(4L, verified.Value.EventsChecked);
    }

    [Fact]
    public async Task Appends_inside_an_open_transaction_commit_or_roll_back_with_it()
    {
        using var signing = Host.SigningAuditEvents();
        var tenant = TestEnvironment.NewTenant();
        await using var connection = await Host.DataSource.OpenConnectionAsync();
        await using (var tx = await connection.BeginTransactionAsync())
        {
            await new NpgsqlCommand("SELECT set_config('role', 'integrations_app', true), set_config('app.tenant_id', @t, true)", connection, tx)
            {
                Parameters = { new NpgsqlParameter("t", tenant) },
            }.ExecuteNonQueryAsync();
            await AuditTrail.WriteAsync(connection, CallerFor(tenant), [new AuditEvent("test.a", "test", "1", null), new AuditEvent("test.b", "test", "1", null)], CancellationToken.None);
            await tx.RollbackAsync();
        }
        Assert.Equal(0L, await OwnerSql.AuditCountAsync(Host.ConnectionString, tenant));
    }
}
