using System.Diagnostics;
using System.Text.Json.Nodes;
using Integrations.Api;
using Integrations.Common;
using Integrations.Features.Credentials;
using Integrations.Features.Integrations;
using Integrations.Infrastructure.Vault;
using Integrations.Tests.Support;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Tests.Credentials;

/// <summary>
/// AWS KMS as the vault's master-key provider, through the real AWS SDK against a local server speaking the KMS JSON
/// API (<see cref="FakeAwsKms"/>, which checks each request's Signature Version 4): seals, opens, the data-key cache,
/// tampering, KMS down, and rotation from the local key to KMS and from one KMS key to another.
/// </summary>
public sealed class AwsKmsMasterKeyTests
{
    private static Dictionary<string, string> Context(JsonNode? node) =>
        node!.AsObject().ToDictionary(p => p.Key, p => p.Value!.GetValue<string>());

    [Fact]
    public async Task Credentials_are_sealed_under_a_KMS_data_key_and_opened_by_KMS_Decrypt_with_the_SDKs_signed_requests_once_per_cache_period()
    {
        await using var kms = await FakeAwsKms.StartAsync();
        var arn = kms.CreateKey("primary");
        await using var host = await VaultTestKit.StartHostAsync(kms.Settings(arn));
        var tenant = TestEnvironment.NewTenant();

        var stored = await host.StoreAsync(tenant, "sk-kms-sealed-4471");
        var integration = await host.IntegrationAsync(tenant, stored.Reference);
        for (var i = 0; i < 3; i++) Assert.Equal("sk-kms-sealed-4471", (await host.RevealAsync(tenant, integration.Id)).Value);

        var generate = Assert.Single(kms.Calls("GenerateDataKey"));
        Assert.Equal("application/x-amz-json-1.1", generate.ContentType);
        Assert.StartsWith($"AWS4-HMAC-SHA256 Credential={FakeAwsKms.AccessKeyId}/", generate.Authorization);
        Assert.Contains($"/{FakeAwsKms.Region}/kms/aws4_request", generate.Authorization);
        Assert.Equal((arn, "AES_256"), (generate.Body["KeyId"]!.GetValue<string>(), generate.Body["KeySpec"]!.GetValue<string>()));
        var binding = new Dictionary<string, string>
        {
            ["purpose"] = "cus-vault/data-key/v1",
            ["tenant"] = tenant,
            ["credential"] = stored.Id.ToString(),
            ["version"] = "1",
        };
        Assert.Equal(binding, Context(generate.Body["EncryptionContext"]));

        var (keyId, wrapped) = (await OwnerSql.QueryAsync<(string, byte[])>(host.ConnectionString,
            "SELECT key_id, wrapped_key FROM credentials WHERE id = @Id", new { stored.Id })).Single();
        Assert.Equal("kms:" + arn, keyId);
        var decrypt = Assert.Single(kms.Calls("Decrypt")); // the later resolutions used the cached data key
        Assert.Equal((Convert.ToBase64String(wrapped), arn), (decrypt.Body["CiphertextBlob"]!.GetValue<string>(), decrypt.Body["KeyId"]!.GetValue<string>()));
        Assert.Equal(binding, Context(decrypt.Body["EncryptionContext"]));
        Assert.All(kms.Requests, r => Assert.True(r.SignatureValid, $"{r.Target} was not signed with the configured key"));
        Assert.All(kms.Requests, r => Assert.DoesNotContain("sk-kms-sealed-4471", r.Body.ToJsonString()));
        Assert.False(await VaultTestKit.DatabaseContainsAsync(host.ConnectionString, tenant, "sk-kms-sealed-4471"));
    }

    [Fact]
    public async Task An_encrypted_reference_made_under_KMS_carries_its_wrapped_data_key_and_opens_only_for_its_tenant()
    {
        await using var kms = await FakeAwsKms.StartAsync();
        var arn = kms.CreateKey("blobs");
        await using var host = await VaultTestKit.StartHostAsync(kms.Settings(arn));
        var tenant = TestEnvironment.NewTenant();

        var made = (await host.SendAsync(new EncryptCredential.Command("sk-kms-blob-9013"), tenant, Scopes.Admin)).Value;
        Assert.Equal("kms:" + arn, made.MasterKeyId);
        Assert.Equal(made.MasterKeyId, VaultCrypto.ReferenceKeyId(made.Reference));
        var integration = await host.IntegrationAsync(tenant, made.Reference);
        Assert.Equal("sk-kms-blob-9013", (await host.RevealAsync(tenant, integration.Id)).Value);
        Assert.Equal(new Dictionary<string, string> { ["purpose"] = "encrypted-ref/data-key/v2", ["tenant"] = tenant },
            Context(Assert.Single(kms.Calls("GenerateDataKey")).Body["EncryptionContext"]));

        var other = await host.SendAsync(new CreateIntegration.Command("stolen", "openai_compatible", BaseUrl: "https://llm.example.com/v1",
            CredentialRef: made.Reference), TestEnvironment.NewTenant());
        Assert.Equal("credential_reference_invalid", other.Error?.Code);
    }

    [Fact]
    public async Task A_tampered_or_transplanted_KMS_blob_fails_closed_and_is_logged()
    {
        await using var kms = await FakeAwsKms.StartAsync();
        var arn = kms.CreateKey("tamper");
        await using var host = await VaultTestKit.StartHostAsync(kms.Settings(arn, cacheTtl: "00:00:00"));
        var tenant = TestEnvironment.NewTenant();
        var first = await host.StoreAsync(tenant, "sk-first-5520", "first");
        var second = await host.StoreAsync(tenant, "sk-second-5521", "second");
        var firstIntegration = await host.IntegrationAsync(tenant, first.Reference, "one");
        var secondIntegration = await host.IntegrationAsync(tenant, second.Reference, "two");
        var donor = await host.StoreAsync(tenant, "sk-donor-5522", "donor"); // a valid KMS blob, bound to another credential id

        await OwnerSql.ExecuteAsync(host.ConnectionString,
            "UPDATE credentials SET wrapped_key = overlay(wrapped_key placing '\\x00'::bytea from length(wrapped_key)) WHERE id = @Id", new { first.Id });
        await OwnerSql.ExecuteAsync(host.ConnectionString,
            "UPDATE credentials SET wrapped_key = (SELECT wrapped_key FROM credentials WHERE id = @From) WHERE id = @To",
            new { From = donor.Id, To = second.Id });

        foreach (var id in new[] { firstIntegration.Id, secondIntegration.Id })
        {
            var refused = await host.RevealAsync(tenant, id);
            Assert.Equal("credential_unreadable", refused.Error?.Code);
            Assert.DoesNotContain("sk-", refused.Error!.Detail);
        }
        var log = await VaultTestKit.AccessLogAsync(host.ConnectionString, tenant);
        Assert.Equal(["integrity_check_failed", "integrity_check_failed"], log.TakeLast(2).Select(l => l.Reason));
        Assert.Contains(kms.Calls("Decrypt"), c => c.Body["CiphertextBlob"] is not null); // KMS was asked, and refused
    }

    [Fact]
    public async Task With_KMS_down_nothing_is_sealed_under_a_fallback_and_callers_get_a_clear_503_soon()
    {
        var kms = await FakeAwsKms.StartAsync();
        var arn = kms.CreateKey("down");
        await using var host = await VaultTestKit.StartHostAsync(kms.Settings(arn, cacheTtl: "00:00:00"));
        var tenant = TestEnvironment.NewTenant();
        var stored = await host.StoreAsync(tenant, "sk-before-outage-7310");
        var integration = await host.IntegrationAsync(tenant, stored.Reference);
        await kms.DisposeAsync();

        var clock = Stopwatch.StartNew();
        var store = await host.SendAsync(new StoreCredential.Command("during-outage", "api_key", Secret: "sk-during-outage-7311"), tenant);
        var encrypt = await host.SendAsync(new EncryptCredential.Command("sk-during-outage-7312"), tenant, Scopes.Admin);
        var rotate = await host.SendAsync(new RotateCredential.Command(stored.Id, new RotateCredential.Body(Secret: "sk-during-outage-7313")), tenant);
        var reveal = await host.RevealAsync(tenant, integration.Id);
        clock.Stop();

        foreach (var error in new[] { store.Error, encrypt.Error, rotate.Error, reveal.Error })
        {
            Assert.Equal(("key_service_unavailable", 503), (error?.Code, error?.Status));
            Assert.Contains("AWS KMS could not be reached", error!.Detail);
        }
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(40), $"four refusals took {clock.Elapsed}");
        var rows = await OwnerSql.QueryAsync<(string, int)>(host.ConnectionString, "SELECT key_id, version FROM credentials WHERE tenant_id = @tenant", new { tenant });
        Assert.Equal([("kms:" + arn, 1)], rows);
        Assert.Equal(("denied", "key_service_unavailable"), (await VaultTestKit.AccessLogAsync(host.ConnectionString, tenant)).Select(l => (l.Outcome, l.Reason)).Last());
    }

    [Fact]
    public async Task Rotation_moves_local_rows_to_KMS_and_then_to_a_new_KMS_key_while_old_rows_keep_opening()
    {
        await using var kms = await FakeAwsKms.StartAsync();
        var (first, second) = (kms.CreateKey("first"), kms.CreateKey("second"));
        var cs = await TestEnvironment.CreateMigratedDatabaseAsync("kmsrot");
        var tenant = TestEnvironment.NewTenant();
        var expected = new Dictionary<Guid, string>();
        var database = new Dictionary<string, string?> { ["ConnectionStrings:Integrations"] = cs };

        await using (var local = await VaultTestKit.StartHostAsync(database))
        {
            for (var i = 0; i < 3; i++)
            {
                var stored = await local.StoreAsync(tenant, $"sk-local-{i}", $"local-{i}");
                expected[(await local.IntegrationAsync(tenant, stored.Reference, $"llm-{i}")).Id] = $"sk-local-{i}";
            }
            var blob = (await local.SendAsync(new EncryptCredential.Command("sk-local-blob"), tenant, Scopes.Admin)).Value.Reference;
            expected[(await local.IntegrationAsync(tenant, blob, "blob")).Id] = "sk-local-blob";
        }
        var ciphertexts = await OwnerSql.QueryAsync<byte[]>(cs, "SELECT ciphertext FROM credentials ORDER BY id");

        Assert.Equal(0, await RotateAsync(cs, kms.Settings(first)));
        Assert.Equal(["kms:" + first], await OwnerSql.QueryAsync<string>(cs, "SELECT DISTINCT key_id FROM credentials"));
        Assert.Equal(ciphertexts, await OwnerSql.QueryAsync<byte[]>(cs, "SELECT ciphertext FROM credentials ORDER BY id"));
        Assert.Equal(3, kms.Calls("Encrypt").Count); // each data key re-wrapped as it was, not regenerated
        var blobRef = await OwnerSql.ScalarAsync<string>(cs, "SELECT credential_ref FROM cus_integrations WHERE name = 'blob'");
        Assert.Equal("kms:" + first, VaultCrypto.ReferenceKeyId(blobRef));

        await using (var onSecond = await VaultTestKit.StartHostAsync(new Dictionary<string, string?>(kms.Settings(second)) { ["ConnectionStrings:Integrations"] = cs }))
        {
            var added = await onSecond.StoreAsync(tenant, "sk-on-second", "added");
            expected[(await onSecond.IntegrationAsync(tenant, added.Reference, "added")).Id] = "sk-on-second";
            foreach (var (id, secret) in expected) Assert.Equal(secret, (await onSecond.RevealAsync(tenant, id)).Value);
            Assert.Contains(kms.Calls("Decrypt"), c => c.Body["KeyId"]!.GetValue<string>() == first);
        }

        Assert.Equal(0, await RotateAsync(cs, kms.Settings(second)));
        Assert.Equal(["kms:" + second], await OwnerSql.QueryAsync<string>(cs, "SELECT DISTINCT key_id FROM credentials"));
        await using (var after = await VaultTestKit.StartHostAsync(new Dictionary<string, string?>(kms.Settings(second)) { ["ConnectionStrings:Integrations"] = cs }))
        {
            foreach (var (id, secret) in expected) Assert.Equal(secret, (await after.RevealAsync(tenant, id)).Value);
        }
        // Without KMS configured, a KMS row says what it needs instead of failing opaquely.
        await using var withoutKms = await VaultTestKit.StartHostAsync(database);
        var refused = await withoutKms.RevealAsync(tenant, expected.Keys.First());
        Assert.Equal("credential_unreadable", refused.Error?.Code);
        Assert.Contains("Integrations:Vault:Kms", refused.Error!.Detail);
    }

    private static Task<int> RotateAsync(string connectionString, Dictionary<string, string?> settings) => HostCommands.RunAsync(
    [
        "rotate-master-key", "--ConnectionStrings:Integrations", connectionString, $"--{MasterKeys.CurrentKey}", TestEnvironment.MasterKey,
        .. settings.SelectMany(s => new[] { $"--{s.Key}", s.Value! }),
    ]);

    [Fact]
    public void KMS_settings_that_cannot_work_stop_start_up_with_what_to_set()
    {
        var noRegion = Assert.Throws<InvalidOperationException>(() => AwsKmsSettings.FromConfiguration(new ConfigurationBuilder()
            .AddInMemoryCollection(new Dictionary<string, string?> { ["Integrations:Vault:Kms:KeyId"] = "arn:aws:kms:eu-west-1:1:key/x" }).Build()));
        Assert.Contains("Region is required", noRegion.Message);
        var halfCredentials = Assert.Throws<InvalidOperationException>(() => AwsKmsSettings.FromConfiguration(new ConfigurationBuilder()
            .AddInMemoryCollection(new Dictionary<string, string?> { ["Integrations:Vault:Kms:Region"] = "eu-west-1", ["Integrations:Vault:Kms:AccessKeyId"] = "AKIA" }).Build()));
        Assert.Contains("both AccessKeyId and SecretAccessKey", halfCredentials.Message);
    }

    [Fact]
    public async Task Choosing_KMS_without_a_key_id_is_refused_when_the_vault_starts()
    {
        await using var host = await VaultTestKit.StartHostAsync(new Dictionary<string, string?>
        {
            ["Integrations:Vault:Provider"] = "aws-kms",
            ["Integrations:Vault:Kms:Region"] = "eu-west-1",
        });
        var e = Assert.Throws<InvalidOperationException>(() => host.Services.GetRequiredService<VaultCrypto>().CurrentKeyId);
        Assert.Contains("Integrations:Vault:Kms:KeyId is not set", e.Message);
        await using var unknown = await VaultTestKit.StartHostAsync(new Dictionary<string, string?> { ["Integrations:Vault:Provider"] = "azure-key-vault" });
        Assert.Contains("not configured here", Assert.Throws<InvalidOperationException>(() => unknown.Services.GetRequiredService<VaultCrypto>()).Message);
    }
}
