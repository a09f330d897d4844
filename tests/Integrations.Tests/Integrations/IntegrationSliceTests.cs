using Integrations.Common;
using Integrations.Features.Credentials;
using Integrations.Features.Integrations;
using Integrations.Tests.Support;

namespace Integrations.Tests.Integrations;

/// <summary>The integrations.* slices through the real mediator pipeline and PostgreSQL.</summary>
public sealed class IntegrationSliceTests(ServiceFixture fixture) : IClassFixture<ServiceFixture>
{
    private ServiceHost Host => fixture.Host;

    private async Task<Integration.Response> CreateAsync(string tenant, string name = "main", string provider = "openai")
    {
        var credential = await Host.SendAsync(new StoreCredential.Command($"{name}-key", "api_key", Secret: "sk-test-key"), tenant);
        var result = await Host.SendAsync(new CreateIntegration.Command(name, provider,
            CredentialRef: credential.Value.Reference, Limits: new Integration.Limits(60, 1_000_000, 5_000),
            AllowedModels: ["gpt-4o", "gpt-4o-mini"]), tenant);
        Assert.True(result.IsSuccess, result.Error?.Detail);
        return result.Value;
    }

    [Fact]
    public async Task Create_stores_the_integration_as_created_and_unknown_health()
    {
        var tenant = TestEnvironment.NewTenant();
        var created = await CreateAsync(tenant);

        Assert.Equal("created", created.Status);
        Assert.Equal("unknown", created.Health);
        Assert.Equal(new Integration.Limits(60, 1_000_000, 5_000), created.Limits);
        Assert.Equal(["gpt-4o", "gpt-4o-mini"], created.AllowedModels);
        var fetched = await Host.SendAsync(new GetIntegration.Query(created.Id), tenant);
        Assert.Equal(created.Name, fetched.Value.Name);
    }

    [Fact]
    public async Task Create_with_a_live_name_twice_is_a_conflict_but_a_deleted_name_can_be_reused()
    {
        var tenant = TestEnvironment.NewTenant();
        var first = await CreateAsync(tenant, "dup");
        var again = await Host.SendAsync(new CreateIntegration.Command("dup", "anthropic"), tenant);
        Assert.Equal("conflict", again.Error?.Code);

        await Host.SendAsync(new DeleteIntegration.Command(first.Id), tenant);
        var reused = await Host.SendAsync(new CreateIntegration.Command("dup", "anthropic"), tenant);
        Assert.True(reused.IsSuccess);
        Assert.True((await CreateAsync(TestEnvironment.NewTenant(), "dup")).Id != Guid.Empty, "another tenant may use the same name");
    }

    public static TheoryData<CreateIntegration.Command, string> InvalidCommands() => new()
    {
        { new CreateIntegration.Command("", "openai"), "name" },
        { new CreateIntegration.Command(new string('x', 201), "openai"), "name" },
        { new CreateIntegration.Command(" padded", "openai"), "name" },
        { new CreateIntegration.Command("n", "cohere"), "provider" },
        { new CreateIntegration.Command("n", "openai", BaseUrl: "http://api.example.com/v1"), "base_url" },
        { new CreateIntegration.Command("n", "openai", BaseUrl: "ftp://api.example.com"), "base_url" },
        { new CreateIntegration.Command("n", "openai", BaseUrl: "https://user:pw@api.example.com"), "base_url" },
        { new CreateIntegration.Command("n", "openai", BaseUrl: "https://api.example.com/v1#models"), "base_url" },
        { new CreateIntegration.Command("n", "openai", BaseUrl: "https://@api.example.com/v1"), "base_url" },
        { new CreateIntegration.Command("n", "openai", BaseUrl: "not a url"), "base_url" },
        { new CreateIntegration.Command("n", "azure_openai"), "base_url" },
        { new CreateIntegration.Command("n", "openai_compatible"), "base_url" },
        { new CreateIntegration.Command("n", "openai", CredentialRef: "sk-proj-abcdef0123456789"), "credential_ref" },
        { new CreateIntegration.Command("n", "openai", CredentialRef: "vault://secrets/openai"), "credential_ref" },
        { new CreateIntegration.Command("n", "openai", CredentialRef: "env://OPENAI_API_KEY"), "credential_ref" },
        { new CreateIntegration.Command("n", "openai", CredentialRef: $"cus-vault://other-tenant/{Guid.NewGuid()}"), "credential_ref" },
        { new CreateIntegration.Command("n", "openai", CredentialRef: "cus-vault://only-tenant"), "credential_ref" },
        { new CreateIntegration.Command("n", "openai", CredentialRef: "encrypted://"), "credential_ref" },
        { new CreateIntegration.Command("n", "openai", CredentialRef: "s3://bucket/key"), "credential_ref" },
        { new CreateIntegration.Command("n", "openai", Limits: new Integration.Limits(RequestsPerMinute: -1)), "limits.requests_per_minute" },
        { new CreateIntegration.Command("n", "openai", Limits: new Integration.Limits(TokensPerMonth: -1)), "limits.tokens_per_month" },
        { new CreateIntegration.Command("n", "openai", Limits: new Integration.Limits(BudgetCentsPerMonth: -5)), "limits.budget_cents_per_month" },
        { new CreateIntegration.Command("n", "openai", AllowedModels: [""]), "allowed_models" },
        { new CreateIntegration.Command("n", "openai", AllowedModels: Enumerable.Range(0, 101).Select(i => $"m{i}").ToList()), "allowed_models" },
    };

    [Theory]
    [MemberData(nameof(InvalidCommands))]
    public async Task Create_rejects_each_invalid_field_with_its_name(CreateIntegration.Command command, string field)
    {
        var result = await Host.SendAsync(command, "fixed-tenant");

        Assert.Equal("validation_failed", result.Error?.Code);
        Assert.Contains(field, result.Error!.FieldErrors!.Keys);
    }

    [Fact]
    public async Task Create_accepts_http_only_for_trusted_hosts_and_encrypted_references()
    {
        var tenant = TestEnvironment.NewTenant();
        var encrypted = await Host.SendAsync(new EncryptCredential.Command("sk-local"), tenant, Scopes.Admin);
        var result = await Host.SendAsync(new CreateIntegration.Command("local", "openai_compatible",
            BaseUrl: "http://127.0.0.1:11434/v1", CredentialRef: encrypted.Value.Reference), tenant);
        Assert.True(result.IsSuccess, result.Error?.Detail);
    }

    [Fact]
    public async Task Raw_key_error_tells_the_user_to_store_a_credential_and_never_echoes_the_key()
    {
        var result = await Host.SendAsync(new CreateIntegration.Command("n", "openai", CredentialRef: "sk-live-SECRET123"), TestEnvironment.NewTenant());

        var message = Assert.Single(result.Error!.FieldErrors!["credential_ref"]);
        Assert.Contains("POST /credentials", message);
        Assert.DoesNotContain("SECRET123", message);
    }

    [Fact]
    public async Task Lifecycle_moves_created_to_enabled_to_disabled_and_back()
    {
        var tenant = TestEnvironment.NewTenant();
        var created = await CreateAsync(tenant);

        Assert.Equal("enabled", (await Host.SendAsync(new EnableIntegration.Command(created.Id), tenant)).Value.Status);
        Assert.Equal("disabled", (await Host.SendAsync(new DisableIntegration.Command(created.Id), tenant)).Value.Status);
        Assert.Equal("enabled", (await Host.SendAsync(new EnableIntegration.Command(created.Id), tenant)).Value.Status);
    }

    [Fact]
    public async Task Invalid_transitions_are_409_invalid_transition()
    {
        var tenant = TestEnvironment.NewTenant();
        var created = await CreateAsync(tenant);

        var disableCreated = await Host.SendAsync(new DisableIntegration.Command(created.Id), tenant);
        Assert.Equal("invalid_transition", disableCreated.Error?.Code);
        Assert.Equal(409, disableCreated.Error?.Status);

        await Host.SendAsync(new EnableIntegration.Command(created.Id), tenant);
        var enableEnabled = await Host.SendAsync(new EnableIntegration.Command(created.Id), tenant);
        Assert.Equal("invalid_transition", enableEnabled.Error?.Code);
    }

    [Fact]
    public async Task Delete_from_any_status_hides_the_integration_everywhere()
    {
        var tenant = TestEnvironment.NewTenant();
        var created = await CreateAsync(tenant);
        await Host.SendAsync(new EnableIntegration.Command(created.Id), tenant);

        Assert.True((await Host.SendAsync(new DeleteIntegration.Command(created.Id), tenant)).IsSuccess);

        Assert.Equal("not_found", (await Host.SendAsync(new GetIntegration.Query(created.Id), tenant)).Error?.Code);
        Assert.Equal("not_found", (await Host.SendAsync(new DeleteIntegration.Command(created.Id), tenant)).Error?.Code);
        Assert.Equal("not_found", (await Host.SendAsync(new EnableIntegration.Command(created.Id), tenant)).Error?.Code);
        Assert.Empty((await Host.SendAsync(new QueryIntegrations.Query(), tenant)).Value.Items);
        Assert.Equal(1L, await OwnerSql.ScalarAsync<long>(Host.ConnectionString,
            "SELECT count(*) FROM cus_integrations WHERE id = @Id AND deleted_at IS NOT NULL", new { created.Id }));
    }

    [Fact]
    public async Task Update_changes_only_the_given_fields_and_limits_replace_all_three()
    {
        var tenant = TestEnvironment.NewTenant();
        var created = await CreateAsync(tenant);

        var updated = await Host.SendAsync(new UpdateIntegration.Command(created.Id,
            new UpdateIntegration.Body(Name: "renamed", Limits: new Integration.Limits(RequestsPerMinute: 5))), tenant);

        Assert.Equal("renamed", updated.Value.Name);
        Assert.Equal(created.CredentialRef, updated.Value.CredentialRef);
        Assert.Equal(created.AllowedModels, updated.Value.AllowedModels);
        Assert.Equal(new Integration.Limits(5, null, null), updated.Value.Limits);
        Assert.True(updated.Value.UpdatedAt > created.UpdatedAt);
    }

    [Fact]
    public async Task Update_to_a_taken_name_is_a_conflict_and_changes_nothing()
    {
        var tenant = TestEnvironment.NewTenant();
        await CreateAsync(tenant, "a");
        var b = await CreateAsync(tenant, "b");

        var result = await Host.SendAsync(new UpdateIntegration.Command(b.Id, new UpdateIntegration.Body(Name: "a")), tenant);

        Assert.Equal("conflict", result.Error?.Code);
        Assert.Equal("b", (await Host.SendAsync(new GetIntegration.Query(b.Id), tenant)).Value.Name);
    }

    [Fact]
    public async Task Update_validates_like_create()
    {
        var tenant = TestEnvironment.NewTenant();
        var created = await CreateAsync(tenant);

        var result = await Host.SendAsync(new UpdateIntegration.Command(created.Id,
            new UpdateIntegration.Body(Name: "", CredentialRef: "vault://x", Limits: new Integration.Limits(-1))), tenant);

        Assert.Equal("validation_failed", result.Error?.Code);
        Assert.Contains("name", result.Error!.FieldErrors!.Keys);
        Assert.Contains("credential_ref", result.Error.FieldErrors.Keys);
        Assert.Contains("limits.requests_per_minute", result.Error.FieldErrors.Keys);
    }

    [Fact]
    public async Task Query_filters_by_status_provider_health_and_name_prefix()
    {
        var tenant = TestEnvironment.NewTenant();
        var alpha = await CreateAsync(tenant, "alpha-1", "openai");
        await CreateAsync(tenant, "alpha-2", "anthropic");
        await CreateAsync(tenant, "beta", "openai");
        await Host.SendAsync(new EnableIntegration.Command(alpha.Id), tenant);

        async Task<string[]> Names(QueryIntegrations.Query q) =>
            [.. (await Host.SendAsync(q, tenant)).Value.Items.Select(i => i.Name).Order()];

        Assert.Equal(["alpha-1", "alpha-2"], await Names(new QueryIntegrations.Query(NamePrefix: "alpha")));
        Assert.Equal(["alpha-1", "beta"], await Names(new QueryIntegrations.Query(Provider: "openai")));
        Assert.Equal(["alpha-1"], await Names(new QueryIntegrations.Query(Status: "enabled")));
        Assert.Equal(["alpha-1", "alpha-2", "beta"], await Names(new QueryIntegrations.Query(Health: "unknown")));
        Assert.Empty(await Names(new QueryIntegrations.Query(Health: "healthy")));
        Assert.Empty(await Names(new QueryIntegrations.Query(NamePrefix: "%")));
    }

    [Fact]
    public async Task Query_pages_newest_first_with_a_cursor_until_the_end()
    {
        var tenant = TestEnvironment.NewTenant();
        for (var i = 0; i < 7; i++) await CreateAsync(tenant, $"n{i}");

        var seen = new List<string>();
        string? cursor = null;
        var pages = 0;
        do
        {
            var page = (await Host.SendAsync(new QueryIntegrations.Query(Limit: 3, Cursor: cursor), tenant)).Value;
            seen.AddRange(page.Items.Select(i => i.Name));
            cursor = page.NextCursor;
            pages++;
        } while (cursor is not null);

        Assert.Equal(3, pages);
        Assert.Equal(["n6", "n5", "n4", "n3", "n2", "n1", "n0"], seen);
    }

    [Theory]
    [InlineData(0, null)]
    [InlineData(201, null)]
    [InlineData(10, "not-a-cursor!")]
    public async Task Query_rejects_bad_limits_and_cursors(int limit, string? cursor)
    {
        var result = await Host.SendAsync(new QueryIntegrations.Query(Limit: limit, Cursor: cursor), TestEnvironment.NewTenant());
        Assert.Equal("validation_failed", result.Error?.Code);
    }

    [Fact]
    public async Task Query_rejects_unknown_filter_values()
    {
        var result = await Host.SendAsync(new QueryIntegrations.Query(Status: "running", Provider: "x", Health: "ok"), TestEnvironment.NewTenant());
        Assert.Equal(["health", "provider", "status"], result.Error!.FieldErrors!.Keys.Order());
    }

    [Fact]
    public async Task Another_tenant_gets_not_found_for_every_operation_and_never_sees_the_row()
    {
        var owner = TestEnvironment.NewTenant();
        var intruder = TestEnvironment.NewTenant();
        var created = await CreateAsync(owner);

        Assert.Equal("not_found", (await Host.SendAsync(new GetIntegration.Query(created.Id), intruder)).Error?.Code);
        Assert.Equal("not_found", (await Host.SendAsync(new UpdateIntegration.Command(created.Id, new UpdateIntegration.Body(Name: "x")), intruder)).Error?.Code);
        Assert.Equal("not_found", (await Host.SendAsync(new EnableIntegration.Command(created.Id), intruder)).Error?.Code);
        Assert.Equal("not_found", (await Host.SendAsync(new DisableIntegration.Command(created.Id), intruder)).Error?.Code);
        Assert.Equal("not_found", (await Host.SendAsync(new DeleteIntegration.Command(created.Id), intruder)).Error?.Code);
        Assert.Empty((await Host.SendAsync(new QueryIntegrations.Query(), intruder)).Value.Items);

        var untouched = await Host.SendAsync(new GetIntegration.Query(created.Id), owner);
        Assert.Equal(("main", "created"), (untouched.Value.Name, untouched.Value.Status));
        Assert.Equal(0, await OwnerSql.AuditCountAsync(Host.ConnectionString, intruder));
    }

    [Fact]
    public async Task Read_scope_cannot_write_and_write_without_read_cannot_list()
    {
        var tenant = TestEnvironment.NewTenant();

        var write = await Host.SendAsync(new CreateIntegration.Command("n", "openai"), tenant, Scopes.Read);
        Assert.Equal(("forbidden", 403), (write.Error?.Code, write.Error?.Status));

        var read = await Host.SendAsync(new QueryIntegrations.Query(), tenant, Scopes.Write);
        Assert.Equal("forbidden", read.Error?.Code);

        Assert.True((await Host.SendAsync(new CreateIntegration.Command("n", "openai"), tenant, Scopes.Admin)).IsSuccess);
    }

    [Fact]
    public async Task A_request_without_caller_context_is_refused_not_run_as_nobody()
    {
        var result = await Host.SendAsync(new CreateIntegration.Command("n", "openai"), caller: null);

        Assert.Equal("unauthenticated", result.Error?.Code);
        Assert.Equal(0L, await OwnerSql.ScalarAsync<long>(Host.ConnectionString, "SELECT count(*) FROM cus_integrations WHERE name = 'n' AND tenant_id = ''"));
    }
}
