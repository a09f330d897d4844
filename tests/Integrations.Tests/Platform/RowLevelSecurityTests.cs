using Dapper;
using Integrations.Features.Integrations;
using Integrations.Tests.Support;
using Npgsql;

namespace Integrations.Tests.Platform;

/// <summary>The second wall: with the WHERE clause gone, row-level security alone still keeps tenants apart.</summary>
public sealed class RowLevelSecurityTests(ServiceFixture fixture) : IClassFixture<ServiceFixture>
{
    private ServiceHost Host => fixture.Host;

    private async Task<List<string>> NamesVisibleToAsync(string? tenantSetting, string sql = "SELECT name FROM cus_integrations")
    {
        await using var connection = new NpgsqlConnection(Host.ConnectionString);
        await connection.OpenAsync();
        await using var tx = await connection.BeginTransactionAsync();
        await connection.ExecuteAsync("SELECT set_config('role', 'integrations_app', true), set_config('app.tenant_id', @t, true)",
            new { t = tenantSetting ?? string.Empty }, tx);
        return (await connection.QueryAsync<string>(sql, transaction: tx)).AsList();
    }

    [Fact]
    public async Task A_query_without_a_tenant_filter_sees_only_the_session_tenant()
    {
        var a = TestEnvironment.NewTenant();
        var b = TestEnvironment.NewTenant();
        await Host.SendAsync(new CreateIntegration.Command("of-a", "openai"), a);
        await Host.SendAsync(new CreateIntegration.Command("of-b", "openai"), b);

        Assert.Equal(["of-a"], await NamesVisibleToAsync(a));
        Assert.Equal(["of-b"], await NamesVisibleToAsync(b));
    }

    [Fact]
    public async Task An_empty_tenant_setting_sees_nothing()
    {
        await Host.SendAsync(new CreateIntegration.Command("x", "openai"), TestEnvironment.NewTenant());

        Assert.Empty(await NamesVisibleToAsync(null));
        Assert.Empty(await NamesVisibleToAsync(null, "SELECT action FROM audit_events"));
    }

    [Fact]
    public async Task The_app_role_cannot_write_rows_for_another_tenant()
    {
        var a = TestEnvironment.NewTenant();
        await using var connection = new NpgsqlConnection(Host.ConnectionString);
        await connection.OpenAsync();
        await using var tx = await connection.BeginTransactionAsync();
        await connection.ExecuteAsync("SELECT set_config('role', 'integrations_app', true), set_config('app.tenant_id', @a, true)", new { a }, tx);

        var error = await Assert.ThrowsAsync<PostgresException>(() => connection.ExecuteAsync(
            "INSERT INTO cus_integrations (id, tenant_id, name, provider) VALUES (gen_random_uuid(), 'victim', 'x', 'openai')", transaction: tx));
        Assert.Equal(PostgresErrorCodes.InsufficientPrivilege, error.SqlState);
    }

    [Fact]
    public async Task Every_table_with_a_tenant_id_has_row_level_security_and_a_policy()
    {
        var unprotected = await OwnerSql.QueryAsync<string>(Host.ConnectionString, """
            SELECT c.relname FROM pg_class c
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id'
            WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace
              AND (NOT c.relrowsecurity OR NOT EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = c.oid))
            """);
        Assert.Empty(unprotected);
    }

    [Fact]
    public async Task The_app_role_is_neither_owner_nor_superuser()
    {
        var role = (await OwnerSql.QueryAsync<(bool, bool)>(Host.ConnectionString,
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = 'integrations_app'")).Single();
        Assert.Equal((false, false), role);
        Assert.Equal(0L, await OwnerSql.ScalarAsync<long>(Host.ConnectionString,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner = 'integrations_app'"));
    }
}
