using Integrations.Features.Credentials;
using Integrations.Features.Datasources;
using Integrations.Infrastructure.Vault;
using Integrations.Tests.Support;

namespace Integrations.Tests.Datasources;

/// <summary>
/// A wrong password against a cluster that really checks passwords (see <see cref="PasswordAuthCluster"/>):
/// the datasource is recorded failing with a reason that names authentication and never the password.
/// </summary>
public sealed class DatasourcePasswordTests(DatasourceFixture fixture, PasswordAuthCluster cluster)
    : IClassFixture<DatasourceFixture>, IClassFixture<PasswordAuthCluster>, IAsyncLifetime
{
    private TargetDatabase _target = null!;

    public async Task InitializeAsync() => _target = await TargetDatabase.CreateAsync(cluster.AdminConnectionString);

    public async Task DisposeAsync() => await _target.DisposeAsync();

    [Fact]
    public async Task The_cluster_these_tests_use_really_refuses_a_wrong_password()
    {
        Assert.True(await PasswordAuthCluster.EnforcesPasswordsAsync(cluster.AdminConnectionString));
    }

    [Fact]
    public async Task A_wrong_password_leaves_the_datasource_failing_with_an_authentication_reason_and_no_secret()
    {
        var tenant = TestEnvironment.NewTenant();
        var wrongPassword = TargetDatabase.NewPassword();
        var datasource = await fixture.RegisterAsync(tenant, "wrong-password", password: wrongPassword, target: _target);

        var tested = (await fixture.Host.SendAsync(new TestDatasource.Command(datasource.Id), tenant)).Value;

        Assert.Equal("failing", tested.Status);
        Assert.Contains("authentication", tested.StatusMessage, StringComparison.OrdinalIgnoreCase);
        Assert.Contains(_target.Role, tested.StatusMessage);
        var stored = await OwnerSql.ScalarAsync<string>(fixture.Host.ConnectionString,
            "SELECT status_message || (SELECT string_agg(details::text, ' ') FROM audit_events WHERE tenant_id = @tenant) FROM datasources WHERE id = @Id",
            new { tenant, datasource.Id });
        Assert.DoesNotContain(wrongPassword, stored);
        Assert.DoesNotContain(_target.Password, stored);

        var right = await fixture.RegisterAsync(tenant, "right-password", target: _target);
        Assert.Equal("active", (await fixture.Host.SendAsync(new TestDatasource.Command(right.Id), tenant)).Value.Status);
    }

    [Fact]
    public async Task With_a_wrong_password_no_template_can_be_defined_and_none_can_run()
    {
        var tenant = TestEnvironment.NewTenant();
        var good = await fixture.RegisterAsync(tenant, "good", target: _target);
        var template = await fixture.DefineAsync(tenant, good.Id, "q", "SELECT count(*) AS n FROM t");
        var wrongPassword = TargetDatabase.NewPassword();
        var bad = await fixture.RegisterAsync(tenant, "bad", password: wrongPassword, target: _target);

        var define = await fixture.Host.SendAsync(new DefineQuery.Command(bad.Id, "q", "SELECT 1"), tenant);
        Assert.Equal("upstream_error", define.Error?.Code);
        Assert.Contains("Authentication failed", define.Error!.Detail);

        // The same template as if it had been defined while the password was right.
        await OwnerSql.ExecuteAsync(fixture.Host.ConnectionString, """
            INSERT INTO datasource_queries (id, tenant_id, datasource_id, name, sql, parameters, columns, row_limit, timeout_ms, rate_limit_per_minute, guard_version)
            SELECT gen_random_uuid(), tenant_id, @Bad, name, sql, parameters, columns, row_limit, timeout_ms, rate_limit_per_minute, guard_version
            FROM datasource_queries WHERE id = @Template
            """, new { Bad = bad.Id, Template = template.Id });
        var run = await fixture.Host.SendAsync(new RunQuery.Command(bad.Id, "q"), tenant);

        Assert.Equal(("upstream_error", 502), (run.Error?.Code, run.Error?.Status));
        Assert.Contains("Authentication failed", run.Error!.Detail);
        Assert.DoesNotContain(wrongPassword, run.Error.Detail);
        Assert.True((await fixture.Host.SendAsync(new RunQuery.Command(good.Id, "q"), tenant)).IsSuccess);
    }

    [Fact]
    public async Task Rotating_the_vault_credential_takes_effect_on_the_next_connection()
    {
        var tenant = TestEnvironment.NewTenant();
        var datasource = await fixture.RegisterAsync(tenant, "rotating", target: _target);
        await fixture.DefineAsync(tenant, datasource.Id, "q", "SELECT count(*) AS n FROM t");
        Assert.True((await fixture.Host.SendAsync(new RunQuery.Command(datasource.Id, "q"), tenant)).IsSuccess);
        var credentialId = CredentialReference.VaultCredentialId(datasource.CredentialRef)!.Value;

        await fixture.Host.SendAsync(new RotateCredential.Command(credentialId, new RotateCredential.Body(Username: _target.Role, Password: "stale-or-wrong")), tenant);
        var refused = await fixture.Host.SendAsync(new RunQuery.Command(datasource.Id, "q"), tenant);
        Assert.Contains("Authentication failed", refused.Error?.Detail);

        await fixture.Host.SendAsync(new RotateCredential.Command(credentialId, new RotateCredential.Body(Username: _target.Role, Password: _target.Password)), tenant);
        Assert.True((await fixture.Host.SendAsync(new RunQuery.Command(datasource.Id, "q"), tenant)).IsSuccess);
    }
}
