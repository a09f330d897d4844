using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Integrations.Common;
using Integrations.Features.Connectors;
using Integrations.Features.Credentials;
using Integrations.Features.McpServers;
using Integrations.Infrastructure.Vault;
using Integrations.Tests.Support;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Tests.Credentials;

/// <summary>
/// client_certificate credentials: checked when stored, and presented for mutual TLS to an MCP server and an http
/// connector that require a client certificate from a test CA (Kestrel with ClientCertificateMode.RequireCertificate);
/// a certificate the server does not accept is refused there and surfaces as a clear error, and the key never shows.
/// </summary>
public sealed class ClientCertificateTests(VaultFixture fixture) : IClassFixture<VaultFixture>
{
    private static readonly TestPki Pki = TestPki.Create("integrations-test-ca");
    private static readonly TestPki Rogue = TestPki.Create("rogue-ca");

    private ServiceHost Host => fixture.Host;

    private async Task<Result<Credential.Response>> StoreAsync(string tenant, Dictionary<string, string> fields, string name = "mtls") =>
        await Host.SendAsync(new StoreCredential.Command(name, "client_certificate", Fields: fields), tenant);

    private static void AssertNoKey(string text, Dictionary<string, string> fields)
    {
        var key = fields["private_key"];
        var body = key.Split('\n')[1]; // a line of the key's base64, as any leak would carry it
        Assert.DoesNotContain(body, text);
    }

    [Fact]
    public async Task A_certificate_is_stored_only_when_it_parses_its_key_matches_it_is_valid_now_and_it_may_authenticate_a_client()
    {
        var tenant = TestEnvironment.NewTenant();
        var good = Pki.CredentialFields(Pki.Issue("agent-1"));
        var stored = await StoreAsync(tenant, good);
        Assert.True(stored.IsSuccess, stored.Error?.Detail);
        Assert.Equal("client_certificate", stored.Value.Type);
        AssertNoKey(JsonSerializer.Serialize(stored.Value), good);
        Assert.False(await VaultTestKit.DatabaseContainsAsync(Host.ConnectionString, tenant, good["private_key"].Split('\n')[1]));

        using var rsaKey = RSA.Create(2048);
        var rsaRequest = new CertificateRequest("CN=rsa-agent", rsaKey, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        using var rsa = rsaRequest.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddDays(1));
        Assert.True((await StoreAsync(tenant, new() { ["certificate"] = rsa.ExportCertificatePem(), ["private_key"] = rsaKey.ExportPkcs8PrivateKeyPem() }, "rsa")).IsSuccess);

        var other = Pki.CredentialFields(Pki.Issue("agent-2"));
        var cases = new (string Why, Dictionary<string, string> Fields, string Expected)[]
        {
            ("no key", new() { ["certificate"] = good["certificate"] }, "needs 'fields' 'certificate' and 'private_key'"),
            ("not PEM", new(good) { ["certificate"] = "MIIB-not-a-certificate" }, "'certificate' is not a PEM certificate"),
            ("garbled key", new(good) { ["private_key"] = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----" }, "'private_key' is not a PEM private key"),
            ("another certificate's key", new(good) { ["private_key"] = other["private_key"] }, "does not belong to the certificate"),
            ("expired", Pki.CredentialFields(Pki.Issue("old", DateTimeOffset.UtcNow.AddDays(-30), DateTimeOffset.UtcNow.AddDays(-1))), "expired on"),
            ("not yet valid", Pki.CredentialFields(Pki.Issue("early", DateTimeOffset.UtcNow.AddDays(1), DateTimeOffset.UtcNow.AddDays(30))), "not valid before"),
            ("server-only", Pki.CredentialFields(Pki.Issue("server", usage: TestPki.ServerAuthentication)), "does not include client authentication"),
            ("bad CA", new(good) { ["ca_certificate"] = "nope" }, "'ca_certificate' is not a PEM certificate"),
            ("unknown field", new(good) { ["passphrase"] = "x" }, "not 'passphrase'"),
        };
        foreach (var (why, fields, expected) in cases)
        {
            var refused = await StoreAsync(tenant, fields, $"bad-{why.Replace(' ', '-')}");
            Assert.True(refused.Error?.Code == "validation_failed", $"{why}: {refused.Error?.Code}");
            var message = Assert.Single(refused.Error!.FieldErrors!["fields"]);
            Assert.Contains(expected, message);
            if (fields.ContainsKey("private_key")) AssertNoKey(message, fields);
        }
    }

    [Fact]
    public async Task An_MCP_server_that_requires_a_client_certificate_is_discovered_and_called_with_it_and_refuses_another()
    {
        await using var mcp = new TestMcpServer { Https = Pki.RequireClientCertificates() };
        await mcp.StartAsync();
        var tenant = TestEnvironment.NewTenant();
        var fields = Pki.CredentialFields(Pki.Issue("agent-mcp"));
        var reference = (await StoreAsync(tenant, fields)).Value.Reference;

        var registered = await Host.SendAsync(new RegisterMcpServer.Command("mtls", mcp.Endpoint.ToString(), reference), tenant);
        Assert.True(registered.IsSuccess, registered.Error?.Detail);
        var echo = registered.Value.Tools.Single(t => t.Name == "echo");
        var called = await Host.SendAsync(new InvokeMcpTool.Command(registered.Value.Server.Id, echo.Id,
            JsonDocument.Parse("""{"message":"over mutual TLS"}""").RootElement), tenant);
        Assert.True(called.IsSuccess, called.Error?.Detail);
        Assert.Contains("over mutual TLS", JsonSerializer.Serialize(called.Value));
        Assert.All(mcp.ReceivedRequests, r => Assert.Equal("CN=agent-mcp", r.ClientCertificate));
        Assert.All(mcp.ReceivedRequests, r => Assert.Null(r.Authorization));

        // A certificate from a CA the server does not trust: the handshake is refused, and that is what the caller hears.
        var rogue = Rogue.CredentialFields(Rogue.Issue("agent-mcp"));
        rogue["ca_certificate"] = Pki.AuthorityPem;
        var attacker = TestEnvironment.NewTenant();
        var rogueRef = (await StoreAsync(attacker, rogue, "rogue")).Value.Reference;
        var before = mcp.ReceivedRequests.Count;
        var refused = await Host.SendAsync(new RegisterMcpServer.Command("rogue", mcp.Endpoint.ToString(), rogueRef), attacker);
        Assert.Equal("upstream_unreachable", refused.Error?.Code);
        Assert.Contains("refuses a client certificate it does not accept", refused.Error!.Detail);
        AssertNoKey(refused.Error.Detail!, rogue);
        Assert.Equal(before, mcp.ReceivedRequests.Count);

        // Without the server's CA, the client does not trust the server either.
        var untrusting = Pki.CredentialFields(Pki.Issue("agent-mcp-2"));
        untrusting.Remove("ca_certificate");
        var other = TestEnvironment.NewTenant();
        var untrustingRef = (await StoreAsync(other, untrusting, "no-ca")).Value.Reference;
        var untrusted = await Host.SendAsync(new RegisterMcpServer.Command("no-ca", mcp.Endpoint.ToString(), untrustingRef), other);
        Assert.Equal("upstream_unreachable", untrusted.Error?.Code);
        Assert.Contains("the server's certificate is not trusted", untrusted.Error!.Detail);
    }

    [Fact]
    public async Task An_http_connector_presents_the_certificate_and_a_refused_one_is_a_clear_failed_test()
    {
        var seen = new System.Collections.Concurrent.ConcurrentQueue<string?>();
        var (app, address) = await LoopbackServer.StartAsync(app => app.MapGet("/{**path}", (HttpContext http) =>
        {
            seen.Enqueue(http.Connection.ClientCertificate?.Subject);
            return Results.Json(new { ok = true });
        }), Pki.RequireClientCertificates());
        await using var _ = app;
        var tenant = TestEnvironment.NewTenant();
        var fields = Pki.CredentialFields(Pki.Issue("agent-http"));
        var rogue = Rogue.CredentialFields(Rogue.Issue("agent-http"));
        rogue["ca_certificate"] = Pki.AuthorityPem;

        async Task<TestConnection.Response> TestAsync(string name, Dictionary<string, string> credential)
        {
            var reference = (await StoreAsync(tenant, credential, name)).Value.Reference;
            var created = await Host.SendAsync(new CreateConnection.Command(name, "http",
                JsonSerializer.SerializeToElement(new { base_url = address }), reference), tenant);
            Assert.True(created.IsSuccess, created.Error?.Detail);
            var tested = await Host.SendAsync(new TestConnection.Command(created.Value.Id), tenant);
            Assert.True(tested.IsSuccess, tested.Error?.Detail);
            return tested.Value;
        }

        var accepted = await TestAsync("crm", fields);
        Assert.True(accepted.Ok, accepted.Detail);
        Assert.Equal(["CN=agent-http"], seen);

        var refused = await TestAsync("crm-rogue", rogue);
        Assert.False(refused.Ok);
        Assert.True(refused.Detail.Contains("refuses a client certificate it does not accept"), refused.Detail);
        AssertNoKey(refused.Detail, rogue);
        Assert.Equal(["CN=agent-http"], seen);
    }

    [Fact]
    public async Task An_encrypted_key_is_stored_decrypted_with_its_password_checked_and_not_kept_and_a_wrong_password_is_a_400_saying_so()
    {
        var tenant = TestEnvironment.NewTenant();
        var certificate = Pki.Issue("agent-encrypted");
        var password = $"pw-{Guid.NewGuid():N}";
        var fields = Pki.CredentialFields(certificate);
        fields["private_key"] = certificate.GetECDsaPrivateKey()!.ExportEncryptedPkcs8PrivateKeyPem(password,
            new PbeParameters(PbeEncryptionAlgorithm.Aes256Cbc, HashAlgorithmName.SHA256, 10_000));
        fields["private_key_password"] = password;
        Assert.Contains("-----BEGIN ENCRYPTED PRIVATE KEY-----", fields["private_key"]);

        var cases = new (string Why, Dictionary<string, string> Fields, string Expected)[]
        {
            ("wrong password", new(fields) { ["private_key_password"] = "not-the-password" }, "'private_key_password' does not decrypt 'private_key'"),
            ("no password", fields.Where(f => f.Key != "private_key_password").ToDictionary(), "'private_key' is encrypted: give its password in 'private_key_password'"),
            ("password for a plain key", new(Pki.CredentialFields(certificate)) { ["private_key_password"] = password }, "is not an encrypted PKCS#8 key"),
        };
        foreach (var (why, refusedFields, expected) in cases)
        {
            var refused = await StoreAsync(tenant, refusedFields, $"bad-{why.Replace(' ', '-')}");
            Assert.True((refused.Error?.Code, refused.Error?.Status) == ("validation_failed", 400), $"{why}: {refused.Error?.Code}");
            var message = Assert.Single(refused.Error!.FieldErrors!["fields"]);
            Assert.Contains(expected, message);
            Assert.DoesNotContain(password, message);
            Assert.DoesNotContain("not-the-password", message);
            AssertNoKey(message, refusedFields);
        }

        var stored = await StoreAsync(tenant, fields, "encrypted");
        Assert.True(stored.IsSuccess, stored.Error?.Detail);
        Assert.DoesNotContain(password, JsonSerializer.Serialize(stored.Value));
        Assert.False(await VaultTestKit.DatabaseContainsAsync(Host.ConnectionString, tenant, password));

        // What the vault sealed: the key decrypted, and no password.
        var row = (await OwnerSql.QueryAsync<(byte[] Ciphertext, byte[] Nonce, byte[] Tag, byte[] WrappedKey, string KeyId, int Version)>(Host.ConnectionString,
            "SELECT ciphertext, nonce, tag, wrapped_key, key_id, version FROM credentials WHERE tenant_id = @tenant AND id = @Id", new { tenant, stored.Value.Id })).Single();
        var sealedFields = JsonDocument.Parse(await Host.Services.GetRequiredService<VaultCrypto>().OpenAsync(
            new SealedSecret(row.Ciphertext, row.Nonce, row.Tag, row.WrappedKey, row.KeyId), tenant, stored.Value.Id, row.Version, CancellationToken.None))
            .RootElement.GetProperty("fields");
        Assert.False(sealedFields.TryGetProperty("private_key_password", out _));
        var sealedKey = sealedFields.GetProperty("private_key").GetString()!;
        Assert.StartsWith("-----BEGIN PRIVATE KEY-----", sealedKey);
        using (var reloaded = ECDsa.Create())
        {
            reloaded.ImportFromPem(sealedKey);
            Assert.Equal(certificate.GetECDsaPublicKey()!.ExportSubjectPublicKeyInfo(), reloaded.ExportSubjectPublicKeyInfo());
        }

        // And it is presented for mutual TLS like any other.
        var seen = new System.Collections.Concurrent.ConcurrentQueue<string?>();
        var (app, address) = await LoopbackServer.StartAsync(app => app.MapGet("/{**path}", (HttpContext http) =>
        {
            seen.Enqueue(http.Connection.ClientCertificate?.Subject);
            return Results.Json(new { ok = true });
        }), Pki.RequireClientCertificates());
        await using var server = app;
        var created = await Host.SendAsync(new CreateConnection.Command("crm-encrypted", "http",
            JsonSerializer.SerializeToElement(new { base_url = address }), stored.Value.Reference), tenant);
        Assert.True(created.IsSuccess, created.Error?.Detail);
        var tested = await Host.SendAsync(new TestConnection.Command(created.Value.Id), tenant);
        Assert.True(tested.Value.Ok, tested.Value.Detail);
        Assert.Equal(["CN=agent-encrypted"], seen);
    }
}
