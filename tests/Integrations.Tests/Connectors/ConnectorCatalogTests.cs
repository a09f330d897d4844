using System.Net.Http.Json;
using System.Text.Json;
using Integrations.Features.Connectors;
using Integrations.Tests.McpGateway;
using Integrations.Tests.Support;
using static Integrations.Tests.Connectors.ConnectorTestKit;

namespace Integrations.Tests.Connectors;

/// <summary>connectors.list / get / register / approve: the built-in catalog, tenant manifests checked against the published schema, drift and approval.</summary>
public sealed class ConnectorCatalogTests(McpGatewayFixture service) : IClassFixture<McpGatewayFixture>
{
    [Fact]
    public void Every_built_in_manifest_passes_the_published_schema_and_the_schema_file_is_the_embedded_one()
    {
        var builtIn = ConnectorManifest.BuiltIn();
        Assert.Contains(builtIn, m => m.Name == "http");
        var published = File.ReadAllText(Path.Combine(TestEnvironment.RepositoryRoot(), "schemas", "connector-manifest.schema.json"));
        using var embedded = typeof(ConnectorManifest).Assembly.GetManifestResourceStream(ConnectorManifest.SchemaResource)!;
        Assert.Equal(published, new StreamReader(embedded).ReadToEnd());
    }

    [Fact]
    public async Task The_catalog_lists_built_in_connectors_in_name_order_and_gets_one_by_name()
    {
        var (_, rest) = await service.TenantAsync();
        await JsonAsync(await rest.PostAsJsonAsync("/connectors", new { manifest = CrmManifest("acme") }), 201);

        var page = await JsonAsync(await rest.GetAsync("/connectors?limit=200"), 200);
        var names = page.GetProperty("items").EnumerateArray().Select(c => c.GetProperty("name").GetString()!).ToList();
        Assert.Contains("http", names);
        Assert.Contains("acme", names);
        Assert.Equal(names.Order(StringComparer.Ordinal), names);

        var first = await JsonAsync(await rest.GetAsync("/connectors?limit=1"), 200);
        var next = await JsonAsync(await rest.GetAsync($"/connectors?limit=1&cursor={first.GetProperty("next_cursor").GetString()}"), 200);
        Assert.Equal(names[1], next.GetProperty("items")[0].GetProperty("name").GetString());

        var http = await JsonAsync(await rest.GetAsync("/connectors/http"), 200);
        Assert.True(http.GetProperty("built_in").GetBoolean());
        Assert.Equal("base_url", http.GetProperty("configuration").GetProperty("required")[0].GetString());
        var acme = await JsonAsync(await rest.GetAsync("/connectors/acme"), 200);
        Assert.False(acme.GetProperty("built_in").GetBoolean());
        Assert.Equal(4, acme.GetProperty("actions").GetArrayLength());
        Assert.Equal("not_found", (await JsonAsync(await rest.GetAsync("/connectors/nope"), 404)).GetProperty("code").GetString());

        var (_, other) = await service.TenantAsync();
        await JsonAsync(await other.GetAsync("/connectors/acme"), 404);
    }

    [Fact]
    public async Task Register_refuses_a_manifest_outside_the_schema_another_implementation_and_a_built_in_name()
    {
        var (_, rest) = await service.TenantAsync();
        var missing = await JsonAsync(await rest.PostAsJsonAsync("/connectors", new { manifest = new { name = "x", version = "1" } }), 400);
        Assert.Equal("validation_failed", missing.GetProperty("code").GetString());

        var slack = JsonSerializer.SerializeToNode(CrmManifest("fake-slack"))!;
        slack["connector"] = "slack";
        await JsonAsync(await rest.PostAsJsonAsync("/connectors", new { manifest = slack }), 400);

        var unknownArgument = JsonSerializer.SerializeToNode(CrmManifest("bad-template"))!;
        unknownArgument["actions"]![0]!["request"]!["path"] = "/items/{nope}";
        var refused = await JsonAsync(await rest.PostAsJsonAsync("/connectors", new { manifest = unknownArgument }), 400);
        Assert.Contains("nope", refused.GetProperty("errors").GetProperty("manifest.actions[0].request")[0].GetString());

        var builtIn = await JsonAsync(await rest.PostAsJsonAsync("/connectors", new { manifest = CrmManifest("http") }), 409);
        Assert.Equal("conflict", builtIn.GetProperty("code").GetString());
    }

    [Fact]
    public async Task A_changed_manifest_is_drift_its_actions_are_refused_until_the_new_hash_is_approved()
    {
        var tenant = TestEnvironment.NewTenant();
        var (_, rest) = await service.KeyAndClientAsync(tenant, McpGatewayFixture.AllScopes);
        await using var upstream = await FakeRestService.StartAsync();
        var first = await JsonAsync(await rest.PostAsJsonAsync("/connectors", new { manifest = CrmManifest("crm") }), 201);
        Assert.Equal("registered", first.GetProperty("change").GetString());
        var same = await JsonAsync(await rest.PostAsJsonAsync("/connectors", new { manifest = CrmManifest("crm") }), 200);
        Assert.Equal("unchanged", same.GetProperty("change").GetString());

        var token = await StoreCredentialAsync(rest, new { name = "crm-token", type = "bearer_token", secret = "t-1" });
        var connection = await CreateConnectionAsync(rest, new { name = "crm", connector = "crm", configuration = new { base_url = upstream.BaseUrl }, credential_ref = token });
        await JsonAsync(await InvokeAsync(rest, connection, "get_item", new { id = "1" }), 200);

        var changed = await JsonAsync(await rest.PostAsJsonAsync("/connectors", new { manifest = CrmManifest("crm", "1.1.0", "Acme CRM, now with more") }), 200);
        Assert.Equal("drifted", changed.GetProperty("change").GetString());
        var connector = changed.GetProperty("connector");
        Assert.Equal("drifted", connector.GetProperty("status").GetString());
        Assert.Equal(2, connector.GetProperty("revision").GetInt32());
        Assert.NotEqual(connector.GetProperty("manifest_hash").GetString(), connector.GetProperty("approved_hash").GetString());

        var refused = await JsonAsync(await InvokeAsync(rest, connection, "get_item", new { id = "1" }), 403);
        Assert.Equal("connector_drifted", refused.GetProperty("rule").GetString());

        var wrongHash = await JsonAsync(await rest.PostAsJsonAsync("/connectors/crm/approve", new { manifest_hash = first.GetProperty("connector").GetProperty("manifest_hash").GetString() }), 409);
        Assert.Equal("conflict", wrongHash.GetProperty("code").GetString());
        var approved = await JsonAsync(await rest.PostAsJsonAsync("/connectors/crm/approve", new { manifest_hash = connector.GetProperty("manifest_hash").GetString() }), 200);
        Assert.Equal("active", approved.GetProperty("status").GetString());
        await JsonAsync(await InvokeAsync(rest, connection, "get_item", new { id = "1" }), 200);

        Assert.Equal(2, await OwnerSql.ScalarAsync<long>(service.Api.ConnectionString,
            "SELECT count(*) FROM connector_manifest_revisions WHERE tenant_id = @tenant", new { tenant }));
        Assert.Equal(1, await OwnerSql.AuditCountAsync(service.Api.ConnectionString, tenant, RegisterConnector.DriftedAction));
        Assert.Equal(1, await OwnerSql.AuditCountAsync(service.Api.ConnectionString, tenant, ApproveConnector.ApprovedAction));
    }
}
