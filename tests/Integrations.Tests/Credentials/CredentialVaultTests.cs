using Integrations.Common;
using Integrations.Features.Credentials;
using Integrations.Features.Integrations;
using Integrations.Infrastructure.Vault;
using Integrations.Tests.Support;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Tests.Credentials;

/// <summary>The vault through the real pipeline and PostgreSQL: encryption at rest, versions, grants, the access log.</summary>
public sealed class CredentialVaultTests(VaultFixture fixture) : IClassFixture<VaultFixture>
{
    private ServiceHost Host => fixture.Host;

    private string Cs => Host.ConnectionString;

    [Fact]
    public async Task Store_then_resolve_round_trips_each_type_and_the_database_holds_no_plaintext()
    {
        var tenant = TestEnvironment.NewTenant();
        var apiKey = $"sk-live-{Guid.NewGuid():N}";
        var password = $"pw-{Guid.NewGuid():N}";
        var fieldValue = $"field-{Guid.NewGuid():N}";
        var stored = await Host.StoreAsync(tenant, apiKey);
        var basic = (await Host.SendAsync(new StoreCredential.Command("basic", "basic_auth", Username: "svc", Password: password), tenant)).Value;
        var custom = (await Host.SendAsync(new StoreCredential.Command("custom", "custom",
            Fields: new Dictionary<string, string> { ["api_key"] = fieldValue, ["org"] = "o-1" }), tenant)).Value;

        Assert.Equal($"cus-vault://{tenant}/{stored.Id}", stored.Reference);
        Assert.Equal(1, stored.Version);
        Assert.Equal("api_key", stored.Type);

        var a = await Host.IntegrationAsync(tenant, stored.Reference, "a");
        var b = await Host.IntegrationAsync(tenant, basic.Reference, "b");
        var c = await Host.IntegrationAsync(tenant, custom.Reference, "c");
        Assert.Equal(apiKey, (await Host.RevealAsync(tenant, a.Id)).Value);
        Assert.Equal($"svc:{password}", (await Host.RevealAsync(tenant, b.Id)).Value);
        Assert.Equal($"api_key={fieldValue},org=o-1", (await Host.RevealAsync(tenant, c.Id)).Value);

        foreach (var secret in new[] { apiKey, password, fieldValue })
        {
            Assert.False(await VaultTestKit.DatabaseContainsAsync(Cs, tenant, secret), "the database holds a plaintext secret");
        }
        Assert.All(await VaultTestKit.AccessLogAsync(Cs, tenant), e => Assert.Equal(("allowed", "granted"), (e.Outcome, e.Reason)));
        Assert.Equal(3, await OwnerSql.AuditCountAsync(Cs, tenant, CredentialResolver.AccessedAction));
    }

    [Fact]
    public async Task A_rename_keeps_the_secret_and_its_grants_and_a_taken_name_is_409()
    {
        var tenant = TestEnvironment.NewTenant();
        var secret = $"sk-rename-{Guid.NewGuid():N}";
        var stored = await Host.StoreAsync(tenant, secret, "before");
        await Host.StoreAsync(tenant, "sk-other", "taken");
        var integration = await Host.IntegrationAsync(tenant, stored.Reference);

        var renamed = await Host.SendAsync(new UpdateCredential.Command(stored.Id, new UpdateCredential.Body(Name: "after")), tenant, Scopes.Admin);

        Assert.True(renamed.IsSuccess, renamed.Error?.Detail);
        Assert.Equal(("after", stored.Version, stored.Reference), (renamed.Value.Name, renamed.Value.Version, renamed.Value.Reference));
        Assert.Equal(secret, (await Host.RevealAsync(tenant, integration.Id)).Value);
        Assert.Equal("conflict", (await Host.SendAsync(new UpdateCredential.Command(stored.Id, new UpdateCredential.Body(Name: "taken")), tenant, Scopes.Admin)).Error?.Code);
        Assert.Equal("validation_failed", (await Host.SendAsync(new UpdateCredential.Command(stored.Id, new UpdateCredential.Body(Name: "")), tenant, Scopes.Admin)).Error?.Code);
        Assert.Equal("not_found", (await Host.SendAsync(new UpdateCredential.Command(stored.Id, new UpdateCredential.Body(Name: "mine")), TestEnvironment.NewTenant(), Scopes.Admin)).Error?.Code);
    }

    [Fact]
    public async Task The_same_secret_stored_twice_gives_different_ciphertexts_and_data_keys()
    {
        var tenant = TestEnvironment.NewTenant();
        await Host.StoreAsync(tenant, "sk-same-secret", "one");
        await Host.StoreAsync(tenant, "sk-same-secret", "two");
        var rows = await OwnerSql.QueryAsync<(byte[] Ciphertext, byte[] Nonce, byte[] WrappedKey)>(Cs,
            "SELECT ciphertext, nonce, wrapped_key FROM credentials WHERE tenant_id = @tenant", new { tenant });
        Assert.Equal(2, rows.Count);
        Assert.NotEqual(rows[0].Ciphertext, rows[1].Ciphertext);
        Assert.NotEqual(rows[0].Nonce, rows[1].Nonce);
        Assert.NotEqual(rows[0].WrappedKey, rows[1].WrappedKey);
    }

    [Theory]
    [InlineData("ciphertext")]
    [InlineData("tag")]
    [InlineData("wrapped_key")]
    public async Task One_flipped_byte_is_a_clear_error_never_garbage(string column)
    {
        var tenant = TestEnvironment.NewTenant();
        var stored = await Host.StoreAsync(tenant, "sk-flip-me");
        var integration = await Host.IntegrationAsync(tenant, stored.Reference);
        await OwnerSql.ExecuteAsync(Cs, $"UPDATE credentials SET {column} = set_byte({column}, 3, get_byte({column}, 3) # 1) WHERE id = @Id", new { stored.Id });

        var result = await Host.RevealAsync(tenant, integration.Id);

        Assert.Equal("credential_unreadable", result.Error?.Code);
        Assert.Contains("integrity check", result.Error!.Detail);
        Assert.Equal(("denied", "integrity_check_failed"), (await VaultTestKit.AccessLogAsync(Cs, tenant)).Select(e => (e.Outcome, e.Reason)).Single());
    }

    [Fact]
    public async Task A_ciphertext_copied_into_another_credentials_row_does_not_decrypt()
    {
        var tenant = TestEnvironment.NewTenant();
        var source = await Host.StoreAsync(tenant, "sk-source-secret", "source");
        var target = await Host.StoreAsync(tenant, "sk-target-secret", "target");
        var integration = await Host.IntegrationAsync(tenant, target.Reference);

        await OwnerSql.ExecuteAsync(Cs, """
            UPDATE credentials t SET ciphertext = s.ciphertext, nonce = s.nonce, tag = s.tag, wrapped_key = s.wrapped_key, key_id = s.key_id
            FROM credentials s WHERE s.id = @Source AND t.id = @Target
            """, new { Source = source.Id, Target = target.Id });
        Assert.Equal("credential_unreadable", (await Host.RevealAsync(tenant, integration.Id)).Error?.Code);

        // The secret alone, with the target's own data key, fails too.
        var other = await Host.StoreAsync(tenant, "sk-other-secret", "other");
        var second = await Host.IntegrationAsync(tenant, other.Reference, "second");
        await OwnerSql.ExecuteAsync(Cs, """
            UPDATE credentials t SET ciphertext = s.ciphertext, nonce = s.nonce, tag = s.tag
            FROM credentials s WHERE s.id = @Source AND t.id = @Target
            """, new { Source = source.Id, Target = other.Id });
        Assert.Equal("credential_unreadable", (await Host.RevealAsync(tenant, second.Id)).Error?.Code);
    }

    [Fact]
    public async Task Rotate_bumps_the_version_and_the_old_version_can_no_longer_be_resolved()
    {
        var tenant = TestEnvironment.NewTenant();
        var stored = await Host.StoreAsync(tenant, "sk-version-one");
        var integration = await Host.IntegrationAsync(tenant, stored.Reference);
        var old = (await OwnerSql.QueryAsync<(byte[] C, byte[] N, byte[] T, byte[] W)>(Cs,
            "SELECT ciphertext, nonce, tag, wrapped_key FROM credentials WHERE id = @Id", new { stored.Id })).Single();

        var rotated = await Host.SendAsync(new RotateCredential.Command(stored.Id, new RotateCredential.Body(Secret: "sk-version-two")), tenant);
        Assert.Equal(2, rotated.Value.Version);
        Assert.NotNull(rotated.Value.RotatedAt);
        Assert.Equal("sk-version-two", (await Host.RevealAsync(tenant, integration.Id)).Value);

        await OwnerSql.ExecuteAsync(Cs, "UPDATE credentials SET ciphertext = @C, nonce = @N, tag = @T, wrapped_key = @W WHERE id = @Id",
            new { old.C, old.N, old.T, old.W, stored.Id });
        Assert.Equal("credential_unreadable", (await Host.RevealAsync(tenant, integration.Id)).Error?.Code);
    }

    [Fact]
    public async Task Rotate_checks_the_new_secret_against_the_credentials_type()
    {
        var tenant = TestEnvironment.NewTenant();
        var stored = (await Host.SendAsync(new StoreCredential.Command("basic", "basic_auth", Username: "u", Password: "p"), tenant)).Value;
        var result = await Host.SendAsync(new RotateCredential.Command(stored.Id, new RotateCredential.Body(Secret: "sk-wrong-shape")), tenant);
        Assert.Equal("validation_failed", result.Error?.Code);
        Assert.Equal(["password", "secret", "username"], result.Error!.FieldErrors!.Keys.Order());
        Assert.Equal("not_found", (await Host.SendAsync(new RotateCredential.Command(Guid.NewGuid(), new RotateCredential.Body(Secret: "x")), tenant)).Error?.Code);
    }

    [Fact]
    public async Task A_deleted_credential_is_erased_and_references_to_it_fail_with_credential_not_found()
    {
        var tenant = TestEnvironment.NewTenant();
        var stored = await Host.StoreAsync(tenant, "sk-to-delete");
        var integration = await Host.IntegrationAsync(tenant, stored.Reference);

        Assert.True((await Host.SendAsync(new DeleteCredential.Command(stored.Id), tenant)).IsSuccess);

        Assert.Equal("credential_not_found", (await Host.RevealAsync(tenant, integration.Id)).Error?.Code);
        Assert.Equal(0, await OwnerSql.ScalarAsync<int>(Cs, "SELECT length(ciphertext) + length(wrapped_key) FROM credentials WHERE id = @Id", new { stored.Id }));
        Assert.Equal(0L, await OwnerSql.ScalarAsync<long>(Cs, "SELECT count(*) FROM credential_grants WHERE credential_id = @Id", new { stored.Id }));
        Assert.Equal("not_found", (await Host.SendAsync(new GetCredential.Query(stored.Id), tenant)).Error?.Code);
        Assert.Equal("credential_not_found", (await Host.SendAsync(new UpdateIntegration.Command(integration.Id,
            new UpdateIntegration.Body(CredentialRef: stored.Reference)), tenant)).Error?.Code);
    }

    [Fact]
    public async Task A_resolution_without_a_grant_is_denied_logged_and_audited_and_the_handler_never_runs()
    {
        var tenant = TestEnvironment.NewTenant();
        var stored = await Host.StoreAsync(tenant, "sk-not-granted");
        var stranger = await Host.IntegrationAsync(tenant, credentialRef: null);
        var runs = RevealForTestHandler.Runs(tenant);

        var result = await Host.RevealAsync(tenant, stranger.Id, stored.Reference);

        Assert.Equal("credential_denied", result.Error?.Code);
        Assert.Equal(403, result.Error!.Status);
        Assert.Equal(runs, RevealForTestHandler.Runs(tenant));
        Assert.Equal(("denied", "no_grant", stored.Reference), (await VaultTestKit.AccessLogAsync(Cs, tenant)).Single());
        Assert.Equal(1, await OwnerSql.AuditCountAsync(Cs, tenant, CredentialResolver.DeniedAction));
    }

    [Fact]
    public async Task Another_tenants_vault_reference_is_refused_and_logged_revealing_nothing()
    {
        var owner = TestEnvironment.NewTenant();
        var intruder = TestEnvironment.NewTenant();
        var stored = await Host.StoreAsync(owner, "sk-owner-only");
        var mine = await Host.IntegrationAsync(intruder, credentialRef: null);

        var real = await Host.RevealAsync(intruder, mine.Id, stored.Reference);
        var made_up = await Host.RevealAsync(intruder, mine.Id, $"cus-vault://{owner}/{Guid.NewGuid()}");

        Assert.Equal("credential_denied", real.Error?.Code);
        Assert.Equal(real.Error, made_up.Error); // the same answer whether or not the credential exists
        Assert.All(await VaultTestKit.AccessLogAsync(Cs, intruder), e => Assert.Equal(("denied", "other_tenant"), (e.Outcome, e.Reason)));
        Assert.Equal(2, (await VaultTestKit.AccessLogAsync(Cs, intruder)).Count);
        Assert.Empty(await VaultTestKit.AccessLogAsync(Cs, owner));
        Assert.Equal("credential_not_found", (await Host.SendAsync(new CreateIntegration.Command("x", "openai", CredentialRef: $"cus-vault://{intruder}/{stored.Id}"), intruder)).Error?.Code);
    }

    [Fact]
    public async Task Attaching_a_reference_grants_it_replacing_it_moves_the_grant_and_deleting_the_integration_drops_it()
    {
        var tenant = TestEnvironment.NewTenant();
        var first = await Host.StoreAsync(tenant, "sk-first", "first");
        var second = await Host.StoreAsync(tenant, "sk-second", "second");
        var integration = await Host.IntegrationAsync(tenant, first.Reference);
        var grants = (await Host.SendAsync(new GetCredential.Query(first.Id), tenant)).Value.Grants;
        Assert.Equal((CredentialAccessor.Integration, integration.Id), grants.Select(g => (g.AccessorType, g.AccessorId)).Single());

        var updated = await Host.SendAsync(new UpdateIntegration.Command(integration.Id, new UpdateIntegration.Body(CredentialRef: second.Reference)), tenant);
        Assert.True(updated.IsSuccess);
        Assert.Empty((await Host.SendAsync(new GetCredential.Query(first.Id), tenant)).Value.Grants);
        Assert.Single((await Host.SendAsync(new GetCredential.Query(second.Id), tenant)).Value.Grants);
        Assert.Equal("sk-second", (await Host.RevealAsync(tenant, integration.Id)).Value);
        Assert.Equal("credential_denied", (await Host.RevealAsync(tenant, integration.Id, first.Reference)).Error?.Code);

        Assert.Equal("credential_not_found", (await Host.SendAsync(new CreateIntegration.Command("ghost", "openai",
            CredentialRef: $"cus-vault://{tenant}/{Guid.NewGuid()}"), tenant)).Error?.Code);
        Assert.Equal(0L, await OwnerSql.ScalarAsync<long>(Cs, "SELECT count(*) FROM cus_integrations WHERE tenant_id = @tenant AND name = 'ghost'", new { tenant }));

        await Host.SendAsync(new DeleteIntegration.Command(integration.Id), tenant);
        Assert.Empty((await Host.SendAsync(new GetCredential.Query(second.Id), tenant)).Value.Grants);
        Assert.True(await OwnerSql.AuditCountAsync(Cs, tenant, CredentialGrants.GrantedAction) >= 2);
        Assert.True(await OwnerSql.AuditCountAsync(Cs, tenant, CredentialGrants.RevokedAction) >= 2);
    }

    [Fact]
    public async Task Explicit_grants_allow_resolution_until_revoked()
    {
        var tenant = TestEnvironment.NewTenant();
        var stored = await Host.StoreAsync(tenant, "sk-explicit");
        var integration = await Host.IntegrationAsync(tenant, credentialRef: null);

        Assert.Equal("credential_denied", (await Host.RevealAsync(tenant, integration.Id, stored.Reference)).Error?.Code);
        var grant = await Host.SendAsync(new GrantCredential.Command(stored.Id, CredentialAccessor.Integration, integration.Id), tenant);
        Assert.Equal(integration.Id, grant.Value.AccessorId);
        Assert.Equal("sk-explicit", (await Host.RevealAsync(tenant, integration.Id, stored.Reference)).Value);

        Assert.True((await Host.SendAsync(new RevokeCredentialGrant.Command(stored.Id, CredentialAccessor.Integration, integration.Id), tenant)).IsSuccess);
        Assert.Equal("credential_denied", (await Host.RevealAsync(tenant, integration.Id, stored.Reference)).Error?.Code);
        Assert.Equal("not_found", (await Host.SendAsync(new RevokeCredentialGrant.Command(stored.Id, CredentialAccessor.Integration, integration.Id), tenant)).Error?.Code);

        Assert.Equal("not_found", (await Host.SendAsync(new GrantCredential.Command(stored.Id, CredentialAccessor.Integration, Guid.NewGuid()), tenant)).Error?.Code);
        Assert.Equal("not_found", (await Host.SendAsync(new GrantCredential.Command(Guid.NewGuid(), CredentialAccessor.Integration, integration.Id), tenant)).Error?.Code);
        Assert.Equal("validation_failed", (await Host.SendAsync(new GrantCredential.Command(stored.Id, "system", integration.Id), tenant)).Error?.Code);
        Assert.Equal(["allowed", "denied", "denied"], (await VaultTestKit.AccessLogAsync(Cs, tenant)).Select(e => e.Outcome).Order());
    }

    [Fact]
    public async Task Env_references_resolve_only_for_system_callers_on_the_system_accessor()
    {
        var variable = $"INTEGRATIONS_TEST_{Guid.NewGuid():N}";
        Environment.SetEnvironmentVariable(variable, "env-secret-value");
        try
        {
            var tenant = TestEnvironment.NewTenant();
            var system = new Caller(tenant, "system:test", new HashSet<string> { Scopes.Read }, IsSystem: true);
            var reference = $"env://{variable}";

            Assert.Equal("env-secret-value", (await Host.SendAsync(new RevealForTest(CredentialAccessor.System, reference), system)).Value);
            Assert.Equal("credential_denied", (await Host.SendAsync(new RevealForTest(CredentialAccessor.System, reference), tenant)).Error?.Code);
            var integration = await Host.IntegrationAsync(tenant, credentialRef: null);
            Assert.Equal("credential_denied", (await Host.SendAsync(new RevealForTest(
                new CredentialAccessor(CredentialAccessor.Integration, integration.Id), reference), system)).Error?.Code);
            Assert.Equal("credential_not_found", (await Host.SendAsync(new RevealForTest(CredentialAccessor.System, "env://INTEGRATIONS_TEST_UNSET_VARIABLE"), system)).Error?.Code);
            Assert.Equal(["allowed", "denied", "denied", "denied"], (await VaultTestKit.AccessLogAsync(Cs, tenant)).Select(e => e.Outcome).Order());
        }
        finally
        {
            Environment.SetEnvironmentVariable(variable, null);
        }
    }

    [Fact]
    public async Task Encrypted_references_need_admin_to_make_resolve_without_a_row_and_only_for_their_tenant()
    {
        var tenant = TestEnvironment.NewTenant();
        Assert.Equal("forbidden", (await Host.SendAsync(new EncryptCredential.Command("sk-encrypted"), tenant, Scopes.Write)).Error?.Code);
        var made = await Host.SendAsync(new EncryptCredential.Command("sk-encrypted"), tenant, Scopes.Admin);
        Assert.StartsWith("encrypted://", made.Value.Reference);
        Assert.DoesNotContain("sk-encrypted", made.Value.Reference);

        var integration = await Host.IntegrationAsync(tenant, made.Value.Reference);
        Assert.Equal("sk-encrypted", (await Host.RevealAsync(tenant, integration.Id)).Value);

        // Another tenant cannot attach it (refused when written), and one attached before that check still does not resolve.
        var other = TestEnvironment.NewTenant();
        var attached = await Host.SendAsync(new CreateIntegration.Command("llm", "openai_compatible", BaseUrl: "https://llm.example.com/v1", CredentialRef: made.Value.Reference), other);
        Assert.Equal(("credential_reference_invalid", 422), (attached.Error?.Code, attached.Error?.Status));
        Assert.Equal(0L, await OwnerSql.ScalarAsync<long>(Cs, "SELECT count(*) FROM cus_integrations WHERE tenant_id = @other", new { other }));
        var theirs = await Host.IntegrationAsync(other, credentialRef: null);
        await OwnerSql.ExecuteAsync(Cs, "UPDATE cus_integrations SET credential_ref = @reference WHERE id = @id", new { reference = made.Value.Reference, id = theirs.Id });
        Assert.Equal("credential_denied", (await Host.RevealAsync(other, theirs.Id)).Error?.Code);
        Assert.Equal(("denied", "integrity_check_failed", "encrypted://(redacted)"), (await VaultTestKit.AccessLogAsync(Cs, other)).Single());
    }

    [Fact]
    public async Task If_the_access_record_cannot_be_written_the_secret_is_not_released()
    {
        var tenant = TestEnvironment.NewTenant();
        var stored = await Host.StoreAsync(tenant, "sk-fail-closed");
        var integration = await Host.IntegrationAsync(tenant, stored.Reference);
        var trigger = $"refuse_{Guid.NewGuid():N}";
        await OwnerSql.ExecuteAsync(Cs, $"""
            CREATE FUNCTION {trigger}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'access log unavailable'; END $$;
            CREATE TRIGGER {trigger} BEFORE INSERT ON credential_access_log FOR EACH ROW
                WHEN (NEW.tenant_id = '{tenant}') EXECUTE FUNCTION {trigger}();
            """);
        var runs = RevealForTestHandler.Runs(tenant);
        try
        {
            await Assert.ThrowsAnyAsync<Npgsql.PostgresException>(() => Host.RevealAsync(tenant, integration.Id));
        }
        finally
        {
            await OwnerSql.ExecuteAsync(Cs, $"DROP TRIGGER {trigger} ON credential_access_log; DROP FUNCTION {trigger}();");
        }
        Assert.Equal(runs, RevealForTestHandler.Runs(tenant));
        Assert.Equal(0, await OwnerSql.AuditCountAsync(Cs, tenant, CredentialResolver.AccessedAction));
        Assert.Equal("sk-fail-closed", (await Host.RevealAsync(tenant, integration.Id)).Value);
    }

    [Fact]
    public async Task List_and_access_log_page_newest_first_and_show_no_secret()
    {
        var tenant = TestEnvironment.NewTenant();
        for (var i = 0; i < 5; i++) await Host.StoreAsync(tenant, $"sk-page-{i}", $"key-{i}");
        var first = await Host.SendAsync(new ListCredentials.Query(Limit: 2), tenant);
        Assert.Equal(["key-4", "key-3"], first.Value.Items.Select(c => c.Name));
        var second = await Host.SendAsync(new ListCredentials.Query(Limit: 2, Cursor: first.Value.NextCursor), tenant);
        Assert.Equal(["key-2", "key-1"], second.Value.Items.Select(c => c.Name));
        Assert.Equal(["key-1"], (await Host.SendAsync(new ListCredentials.Query(NamePrefix: "key-1"), tenant)).Value.Items.Select(c => c.Name));

        var integration = await Host.IntegrationAsync(tenant, first.Value.Items[0].Reference);
        for (var i = 0; i < 3; i++) await Host.RevealAsync(tenant, integration.Id);
        await Host.RevealAsync(tenant, integration.Id, second.Value.Items[0].Reference);
        var log = await Host.SendAsync(new ListCredentialAccessLog.Query(Limit: 3), tenant);
        Assert.Equal(["denied", "allowed", "allowed"], log.Value.Items.Select(e => e.Outcome));
        var rest = await Host.SendAsync(new ListCredentialAccessLog.Query(Limit: 3, Cursor: log.Value.NextCursor), tenant);
        Assert.Single(rest.Value.Items);
        Assert.Null(rest.Value.NextCursor);
        var denied = await Host.SendAsync(new ListCredentialAccessLog.Query(Outcome: "denied", CredentialId: second.Value.Items[0].Id), tenant);
        Assert.Equal("no_grant", denied.Value.Items.Single().Reason);
        Assert.Equal("test.reveal", denied.Value.Items.Single().Operation);
        Assert.Equal("validation_failed", (await Host.SendAsync(new ListCredentialAccessLog.Query(Outcome: "maybe"), tenant)).Error?.Code);
    }

    [Fact]
    public async Task Store_validates_fields_by_type_and_names_are_unique_among_live_credentials()
    {
        var tenant = TestEnvironment.NewTenant();
        var bad = await Host.SendAsync(new StoreCredential.Command("", "oauth", Secret: "sk-x"), tenant);
        Assert.Equal(["name", "type"], bad.Error!.FieldErrors!.Keys.Order());
        var mixed = await Host.SendAsync(new StoreCredential.Command("m", "api_key", Username: "u"), tenant);
        Assert.Equal(["secret", "username"], mixed.Error!.FieldErrors!.Keys.Order());
        Assert.DoesNotContain(mixed.Error.FieldErrors.Values.SelectMany(v => v), m => m.Contains("sk-"));
        Assert.Equal("validation_failed", (await Host.SendAsync(new StoreCredential.Command("c", "custom"), tenant)).Error?.Code);

        var kept = await Host.StoreAsync(tenant, "sk-1", "dup");
        Assert.Equal("conflict", (await Host.SendAsync(new StoreCredential.Command("dup", "api_key", Secret: "sk-2"), tenant)).Error?.Code);
        await Host.SendAsync(new DeleteCredential.Command(kept.Id), tenant);
        Assert.True((await Host.SendAsync(new StoreCredential.Command("dup", "api_key", Secret: "sk-3"), tenant)).IsSuccess);
        Assert.Equal("forbidden", (await Host.SendAsync(new StoreCredential.Command("r", "api_key", Secret: "sk-4"), tenant, Scopes.Read)).Error?.Code);
    }

    [Fact]
    public async Task A_resolved_credential_redacts_itself_and_refuses_to_serialize()
    {
        var tenant = TestEnvironment.NewTenant();
        var stored = await Host.StoreAsync(tenant, "sk-redact-me");
        await Host.IntegrationAsync(tenant, stored.Reference);
        await using var scope = Host.Services.CreateAsyncScope();
        scope.ServiceProvider.GetRequiredService<CallerContext>().Set(TestEnvironment.CallerFor(tenant));
        var integrationId = (await OwnerSql.QueryAsync<Guid>(Cs, "SELECT id FROM cus_integrations WHERE tenant_id = @tenant", new { tenant })).Single();
        var resolved = (await scope.ServiceProvider.GetRequiredService<CredentialResolver>().ResolveAsync(
            new CredentialAccessor(CredentialAccessor.Integration, integrationId), stored.Reference, "test.direct", CancellationToken.None)).Value;

        Assert.Equal("sk-redact-me", resolved.Token);
        Assert.DoesNotContain("sk-redact-me", resolved.ToString());
        Assert.Throws<NotSupportedException>(() => System.Text.Json.JsonSerializer.Serialize(resolved));
        Assert.DoesNotContain("sk-", new StoreCredential.Command("n", "api_key", Secret: "sk-redact-me").ToString());
    }
}
