using Integrations.Api;
using Integrations.Common;
using Integrations.Features.Credentials;
using Integrations.Infrastructure.Vault;
using Integrations.Tests.Support;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting.Internal;

namespace Integrations.Tests.Credentials;

/// <summary>Master keys: configuration, start-up refusal, and rotation that never stops credentials from resolving.</summary>
public sealed class MasterKeyTests
{
    private static IConfiguration Config(params (string Key, string Value)[] settings) =>
        new ConfigurationBuilder().AddInMemoryCollection(settings.Select(s => new KeyValuePair<string, string?>(s.Key, s.Value))).Build();

    [Fact]
    public void A_missing_or_malformed_master_key_is_refused_with_a_message_that_says_what_to_do_and_never_the_value()
    {
        var missing = Assert.Throws<InvalidOperationException>(() => MasterKeys.FromConfiguration(Config(), new HostingEnvironment { EnvironmentName = "Production" }));
        Assert.Contains("Integrations:Vault:MasterKey is not set", missing.Message);
        Assert.Contains("openssl rand -base64 32", missing.Message);

        foreach (var malformed in new[] { "not base64 at all!", Convert.ToBase64String(new byte[16]), Convert.ToBase64String(new byte[33]) })
        {
            var e = Assert.Throws<InvalidOperationException>(() => MasterKeys.FromConfiguration(Config((MasterKeys.CurrentKey, malformed)), null));
            Assert.Contains("malformed", e.Message);
            Assert.DoesNotContain(malformed, e.Message);
        }
        var previous = Assert.Throws<InvalidOperationException>(() => MasterKeys.FromConfiguration(
            Config((MasterKeys.CurrentKey, TestEnvironment.MasterKey), ($"{MasterKeys.PreviousKeysSection}:old", "short")), null));
        Assert.Contains("PreviousKeys:old", previous.Message);
    }

    [Fact]
    public void Development_without_a_key_generates_one_once_into_a_private_file()
    {
        var root = Directory.CreateTempSubdirectory("vault-dev-").FullName;
        try
        {
            var environment = new HostingEnvironment { EnvironmentName = "Development", ContentRootPath = root };
            var first = MasterKeys.FromConfiguration(Config(), environment);
            var again = MasterKeys.FromConfiguration(Config(), environment);
            Assert.Equal(first.Current.Id, again.Current.Id);
            var file = Path.Combine(root, ".data", "vault-master.key");
            Assert.True(File.Exists(file));
            if (!OperatingSystem.IsWindows()) Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(file));
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public void Key_ids_derive_from_the_key_and_previous_keys_stay_resolvable()
    {
        var current = MasterKeys.Parse(MasterKeys.Generate(), "current");
        var old = MasterKeys.Parse(TestEnvironment.MasterKey, "old");
        var keys = MasterKeys.FromConfiguration(Config(
            (MasterKeys.CurrentKey, Convert.ToBase64String(current.Bytes)), ($"{MasterKeys.PreviousKeysSection}:0", TestEnvironment.MasterKey)), null);
        Assert.Equal(current.Id, keys.Current.Id);
        Assert.Matches("^[0-9a-f]{8}$", keys.Current.Id);
        Assert.True(keys.TryGet(old.Id, out _));
        Assert.Equal(MasterKeys.Parse(TestEnvironment.MasterKey, "again").Id, old.Id);
        Assert.DoesNotContain(TestEnvironment.MasterKey, old.ToString());
    }

    [Fact]
    public async Task Production_start_up_stops_when_the_master_key_is_missing()
    {
        // The service's own hosted start-up check, in a Production host built like the API's (without the web server,
        // whose failed start races its own disposal inside WebApplicationFactory).
        var builder = Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder(new Microsoft.Extensions.Hosting.HostApplicationBuilderSettings
        {
            EnvironmentName = "Production",
        });
        builder.Configuration.AddConfiguration(TestEnvironment.Configuration(await TestEnvironment.ConnectionStringAsync()));
        builder.Configuration[MasterKeys.CurrentKey] = "";
        builder.Services.AddIntegrations(builder.Configuration);
        using var host = builder.Build();

        var e = await Assert.ThrowsAnyAsync<Exception>(() => host.StartAsync());

        Assert.Contains("Integrations:Vault:MasterKey is not set", e.ToString());
    }

    [Fact]
    public async Task Rotating_the_master_key_rewraps_every_data_key_and_credentials_resolve_before_during_and_after()
    {
        var cs = await TestEnvironment.CreateMigratedDatabaseAsync("rot");
        var oldKey = TestEnvironment.MasterKey;
        var newKey = MasterKeys.Generate();
        var newKeyId = MasterKeys.Parse(newKey, "new").Id;
        var tenant = TestEnvironment.NewTenant();
        var expected = new Dictionary<Guid, string>();

        await using (var before = await VaultTestKit.StartHostAsync(new Dictionary<string, string?> { ["ConnectionStrings:Integrations"] = cs }))
        {
            for (var i = 0; i < 12; i++)
            {
                var stored = await before.StoreAsync(tenant, $"sk-rotate-{i}", $"key-{i}");
                expected[(await before.IntegrationAsync(tenant, stored.Reference, $"llm-{i}")).Id] = $"sk-rotate-{i}";
            }
            var blob = (await before.SendAsync(new EncryptCredential.Command("sk-in-a-blob"), tenant, Scopes.Admin)).Value.Reference;
            expected[(await before.IntegrationAsync(tenant, blob, "blob")).Id] = "sk-in-a-blob";
        }
        var ciphertexts = await OwnerSql.QueryAsync<byte[]>(cs, "SELECT ciphertext FROM credentials ORDER BY id");

        var during = new Dictionary<string, string?>
        {
            ["ConnectionStrings:Integrations"] = cs,
            [MasterKeys.CurrentKey] = newKey,
            [$"{MasterKeys.PreviousKeysSection}:0"] = oldKey,
        };
        await using (var host = await VaultTestKit.StartHostAsync(during))
        {
            var added = await host.StoreAsync(tenant, "sk-added-under-new-key", "added");
            expected[(await host.IntegrationAsync(tenant, added.Reference, "added")).Id] = "sk-added-under-new-key";

            var rotation = HostCommands.RunAsync(
            [
                "rotate-master-key", "--ConnectionStrings:Integrations", cs, $"--{MasterKeys.CurrentKey}", newKey,
                $"--{MasterKeys.PreviousKeysSection}:0", oldKey,
            ]);
            while (!rotation.IsCompleted)
            {
                foreach (var (id, secret) in expected) Assert.Equal(secret, (await host.RevealAsync(tenant, id)).Value);
            }
            Assert.Equal(0, await rotation);
        }

        Assert.Equal([newKeyId], await OwnerSql.QueryAsync<string>(cs, "SELECT DISTINCT key_id FROM credentials"));
        Assert.Equal(ciphertexts, (await OwnerSql.QueryAsync<byte[]>(cs, "SELECT ciphertext FROM credentials ORDER BY id")).Take(ciphertexts.Count));
        var blobRef = await OwnerSql.ScalarAsync<string>(cs, "SELECT credential_ref FROM cus_integrations WHERE name = 'blob'");
        Assert.Equal(newKeyId, VaultCrypto.ReferenceKeyId(blobRef));

        await using (var after = await VaultTestKit.StartHostAsync(new Dictionary<string, string?> { ["ConnectionStrings:Integrations"] = cs, [MasterKeys.CurrentKey] = newKey }))
        {
            foreach (var (id, secret) in expected) Assert.Equal(secret, (await after.RevealAsync(tenant, id)).Value);
        }
        await using (var stale = await VaultTestKit.StartHostAsync(new Dictionary<string, string?> { ["ConnectionStrings:Integrations"] = cs }))
        {
            var refused = await stale.RevealAsync(tenant, expected.Keys.First());
            Assert.Equal("credential_unreadable", refused.Error?.Code);
            Assert.Contains(newKeyId, refused.Error!.Detail);
        }
    }
}
