using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Integrations.Common;
using Integrations.Features.Audit;
using Integrations.Features.Credentials;
using Integrations.Features.Datasources;
using Integrations.Infrastructure.Datasources;
using Integrations.Tests.Support;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Tests.Datasources;

/// <summary>datasources.update through the real pipeline, against real target databases; attacks and the background re-check.</summary>
public sealed class DatasourceUpdateTests(DatasourceFixture fixture) : IClassFixture<DatasourceFixture>
{
    private ServiceHost Host => fixture.Host;
    private TargetDatabase Target => fixture.Target;

    private const string CustomersSql = "SELECT id FROM customers WHERE id <= @max_id ORDER BY id";

    private static readonly Datasource.Parameter[] MaxId = [new("max_id", "integer")];

    private Task<Result<RunQuery.Response>> RunAsync(string tenant, Guid datasourceId, string name) =>
        Host.SendAsync(new RunQuery.Command(datasourceId, name, DatasourceSliceTests.Args(new { max_id = 3 })), tenant);

    private Task<Result<Datasource.Response>> UpdateAsync(string tenant, Guid id, UpdateDatasource.Body body) =>
        Host.SendAsync(new UpdateDatasource.Command(id, body), tenant);

    private async Task<Datasource.Response> GetAsync(string tenant, Guid id) => (await Host.SendAsync(new GetDatasource.Query(id), tenant)).Value;

    private async Task<JsonElement> LastUpdateEventAsync(string tenant) =>
        (await Host.SendAsync(new ListAuditEvents.Query(Action: UpdateDatasource.Command.Operation, Limit: 1), tenant)).Value.Items[0].Details;

    [Fact]
    public async Task Name_limits_and_timeout_change_in_place_and_templates_keep_running()
    {
        var tenant = TestEnvironment.NewTenant();
        var datasource = await fixture.RegisterAsync(tenant);
        Assert.Equal("active", (await Host.SendAsync(new TestDatasource.Command(datasource.Id), tenant)).Value.Status);
        await fixture.DefineAsync(tenant, datasource.Id, "first", CustomersSql, MaxId);

        var updated = await UpdateAsync(tenant, datasource.Id, new UpdateDatasource.Body(Name: "renamed", RowLimit: 2, StatementTimeoutMs: 1500));

        Assert.True(updated.IsSuccess, updated.Error?.Detail);
        Assert.Equal(("renamed", 2, 1500, "active"), (updated.Value.Name, updated.Value.RowLimit, updated.Value.StatementTimeoutMs, updated.Value.Status));
        var run = await RunAsync(tenant, datasource.Id, "first");
        Assert.True(run.IsSuccess, run.Error?.Detail);
        var details = await LastUpdateEventAsync(tenant);
        Assert.Equal(0, details.GetProperty("templates_to_recheck").GetInt32());
        Assert.Equal("renamed", details.GetProperty("changed").GetProperty("name").GetString());
    }

    [Fact]
    public async Task A_new_database_sends_templates_back_through_the_checks_and_runs_wait_until_they_pass_there()
    {
        await using var second = await TargetDatabase.CreateAsync();
        await using (var admin = new Npgsql.NpgsqlConnection(Target.AdminConnectionString))
        {
            await admin.OpenAsync();
            await using var create = new Npgsql.NpgsqlCommand($"CREATE TABLE IF NOT EXISTS only_here (id int); GRANT SELECT ON only_here TO \"{Target.Role}\"", admin);
            await create.ExecuteNonQueryAsync();
        }
        var tenant = TestEnvironment.NewTenant();
        var datasource = await fixture.RegisterAsync(tenant);
        Assert.Equal("active", (await Host.SendAsync(new TestDatasource.Command(datasource.Id), tenant)).Value.Status);
        await fixture.DefineAsync(tenant, datasource.Id, "customers", CustomersSql, MaxId);
        await fixture.DefineAsync(tenant, datasource.Id, "only-here", "SELECT id FROM only_here");
        var credential = await fixture.StoreAsync(tenant, second.Password, second.Role);

        var moved = await UpdateAsync(tenant, datasource.Id, new UpdateDatasource.Body(
            Port: second.Port, Database: second.Database, Username: second.Role, CredentialRef: credential.Reference));

        Assert.True(moved.IsSuccess, moved.Error?.Detail);
        Assert.Equal((second.Database, second.Role, "pending"), (moved.Value.Database, moved.Value.Username, moved.Value.Status));
        Assert.Equal(2, (await LastUpdateEventAsync(tenant)).GetProperty("templates_to_recheck").GetInt32());
        var waiting = await RunAsync(tenant, datasource.Id, "customers");
        Assert.Equal(("policy_denied", "template_unchecked"), (waiting.Error?.Code, waiting.Error?.Extensions?["rule"]));

        await Host.Services.GetRequiredService<StoredTemplateCheck>().RunOnceAsync(CancellationToken.None);

        var run = await RunAsync(tenant, datasource.Id, "customers");
        Assert.True(run.IsSuccess, run.Error?.Detail);
        Assert.Equal([1, 2, 3], run.Value.Rows.Select(r => (int)r[0]!));
        Assert.True(await OwnerSql.ScalarAsync<long>(second.AdminConnectionString,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = @name AND datname = @db",
            new { name = DatasourceConnections.ApplicationName(datasource.Id), db = second.Database }) >= 1,
            "the gateway's pooled session is on the new database");
        // The table this template read does not exist on the new database: disabled for good, with the reason.
        var gone = await RunAsync(tenant, datasource.Id, "only-here");
        Assert.Equal(("policy_denied", "template_disabled"), (gone.Error?.Code, gone.Error?.Extensions?["rule"]));
        var disabled = (await Host.SendAsync(new ListAuditEvents.Query(Action: RecheckQuery.Disabled, Limit: 5), tenant)).Value.Items.Single();
        Assert.Contains("only_here", disabled.Details.GetProperty("reason").GetString());
    }

    [Fact]
    public async Task A_new_function_list_sends_templates_back_through_the_checks()
    {
        var tenant = TestEnvironment.NewTenant();
        var datasource = await fixture.RegisterAsync(tenant);
        await fixture.DefineAsync(tenant, datasource.Id, "customers", CustomersSql, MaxId);

        var same = await UpdateAsync(tenant, datasource.Id, new UpdateDatasource.Body(AllowedFunctions: []));
        Assert.Equal(0, (await LastUpdateEventAsync(tenant)).GetProperty("templates_to_recheck").GetInt32());
        var widened = await UpdateAsync(tenant, datasource.Id, new UpdateDatasource.Body(AllowedFunctions: ["public.similarity", "public.similarity"]));

        Assert.True(same.IsSuccess && widened.IsSuccess, widened.Error?.Detail);
        Assert.Equal(["public.similarity"], widened.Value.AllowedFunctions);
        Assert.Equal(1, (await LastUpdateEventAsync(tenant)).GetProperty("templates_to_recheck").GetInt32());
        Assert.Equal("template_unchecked", (await RunAsync(tenant, datasource.Id, "customers")).Error?.Extensions?["rule"]);
        await Host.Services.GetRequiredService<StoredTemplateCheck>().RunOnceAsync(CancellationToken.None);
        Assert.True((await RunAsync(tenant, datasource.Id, "customers")).IsSuccess);
    }

    [Fact]
    public async Task Attacks_change_nothing_another_tenants_id_private_hosts_plaintext_and_a_password_bound_elsewhere()
    {
        var owner = TestEnvironment.NewTenant();
        var intruder = TestEnvironment.NewTenant();
        var datasource = await fixture.RegisterAsync(owner);

        Assert.Equal("not_found", (await UpdateAsync(intruder, datasource.Id, new UpdateDatasource.Body(Name: "mine"))).Error?.Code);

        var metadata = await UpdateAsync(owner, datasource.Id, new UpdateDatasource.Body(Host: "169.254.169.254", TlsMode: "require"));
        Assert.Equal("ssrf_blocked", metadata.Error?.Code);

        var plaintext = await UpdateAsync(owner, datasource.Id, new UpdateDatasource.Body(Host: "db.example.com"));
        Assert.Equal("validation_failed", plaintext.Error?.Code);
        Assert.Contains("host", plaintext.Error!.FieldErrors!.Keys);

        var bound = await Host.SendAsync(new StoreCredential.Command("bound", "basic_auth", Username: Target.Role, Password: Target.Password,
            AllowedHosts: ["db.internal.example"]), owner);
        var moved = await UpdateAsync(owner, datasource.Id, new UpdateDatasource.Body(CredentialRef: bound.Value.Reference));
        Assert.Equal("credential_host_not_allowed", moved.Error?.Code);

        var invalid = await UpdateAsync(owner, datasource.Id, new UpdateDatasource.Body(Port: 0, TlsMode: "sometimes", RowLimit: 0, AllowedFunctions: ["public.dblink"]));
        Assert.Equal("validation_failed", invalid.Error?.Code);
        Assert.Equal(["allowed_functions[0]", "port", "row_limit", "tls_mode"], invalid.Error!.FieldErrors!.Keys.Order(StringComparer.Ordinal));

        var after = await GetAsync(owner, datasource.Id);
        Assert.Equal((datasource.Name, datasource.Host, datasource.CredentialRef, datasource.Port),
            (after.Name, after.Host, after.CredentialRef, after.Port));
        Assert.Empty((await Host.SendAsync(new ListAuditEvents.Query(Action: UpdateDatasource.Command.Operation, Limit: 5), owner)).Value.Items);
    }

    [Fact]
    public async Task Over_http_the_service_rechecks_right_after_the_change_commits()
    {
        await using var api = await ApiFactory.StartAsync();
        var tenant = TestEnvironment.NewTenant();
        var client = await api.ClientForAsync(tenant);
        var credential = await (await client.PostAsJsonAsync("/credentials", new { name = "db", type = "basic_auth", username = Target.Role, password = Target.Password }))
            .Content.ReadFromJsonAsync<JsonElement>();
        var registered = await client.PostAsJsonAsync("/integrations/datasources", new
        {
            name = "warehouse",
            host = Target.Host,
            port = Target.Port,
            database = Target.Database,
            username = Target.Role,
            credential_ref = credential.GetProperty("reference").GetString(),
            tls_mode = "disable",
        });
        var id = (await registered.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString();
        Assert.Equal(HttpStatusCode.Created, (await client.PostAsJsonAsync($"/integrations/datasources/{id}/queries",
            new { name = "customers", sql = CustomersSql, parameters = new[] { new { name = "max_id", type = "integer" } } })).StatusCode);

        var patched = await client.PatchAsJsonAsync($"/integrations/datasources/{id}", new { allowed_functions = new[] { "public.similarity" } });
        Assert.Equal(HttpStatusCode.OK, patched.StatusCode);

        HttpResponseMessage run;
        var deadline = DateTime.UtcNow.AddSeconds(15);
        do
        {
            run = await client.PostAsJsonAsync($"/integrations/datasources/{id}/queries/customers", new { parameters = new { max_id = 2 } });
            if (run.StatusCode == HttpStatusCode.OK) break;
            Assert.Equal(HttpStatusCode.Forbidden, run.StatusCode);
            await Task.Delay(100);
        }
        while (DateTime.UtcNow < deadline);
        Assert.True(run.StatusCode == HttpStatusCode.OK, "the template was not re-checked within 15 s of the change");
        Assert.Equal(HttpStatusCode.NotFound, (await (await api.ClientForAsync(TestEnvironment.NewTenant()))
            .PatchAsJsonAsync($"/integrations/datasources/{id}", new { name = "x" })).StatusCode);
    }
}
