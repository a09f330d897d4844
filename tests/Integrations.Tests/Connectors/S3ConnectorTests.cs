using System.Net.Http.Json;
using System.Text.Json;
using Amazon.S3.Model;
using Integrations.Tests.McpGateway;
using Integrations.Tests.Support;
using static Integrations.Tests.Connectors.ConnectorTestKit;

namespace Integrations.Tests.Connectors;

/// <summary>The s3 connector against a real S3-compatible server (s3rver from npm): put, get, list with pages, and what it refuses.</summary>
public sealed class S3ConnectorTests(McpGatewayFixture service) : IClassFixture<McpGatewayFixture>
{
    private async Task<(HttpClient Client, string Key)> TenantAsync()
    {
        var (_, rest) = await service.TenantAsync(McpGatewayFixture.AllScopes);
        var key = await StoreCredentialAsync(rest, new { name = "s3", type = "basic_auth", username = S3Service.AccessKey, password = S3Service.AccessKey });
        return (rest, key);
    }

    [Fact]
    public async Task A_put_object_is_read_back_byte_for_byte_and_a_prefix_lists_in_pages()
    {
        await using var s3 = await S3Service.StartAsync("reports");
        var (rest, key) = await TenantAsync();
        var connection = await CreateConnectionAsync(rest, new { name = "files", connector = "s3", configuration = new { service_url = s3.Url, bucket = "reports" }, credential_ref = key });
        var test = await JsonAsync(await rest.PostAsync($"/connections/{connection.GetProperty("id")}/test", null), 200);
        Assert.True(test.GetProperty("ok").GetBoolean(), test.GetProperty("detail").GetString());

        var bytes = Enumerable.Range(0, 4096).Select(i => (byte)(i * 7 % 256)).ToArray();
        var put = await JsonAsync(await InvokeAsync(rest, connection, "put_object",
            new { key = "2026/q4 report+final.bin", body = Convert.ToBase64String(bytes), encoding = "base64", content_type = "application/x-report" }), 200);
        Assert.Equal(4096, put.GetProperty("output").GetProperty("size").GetInt32());
        using (var client = s3.Client())
        using (var stored = await client.GetObjectAsync("reports", "2026/q4 report+final.bin"))
        using (var copy = new MemoryStream())
        {
            await stored.ResponseStream.CopyToAsync(copy);
            Assert.Equal(bytes, copy.ToArray());
            Assert.Equal("application/x-report", stored.Headers.ContentType);
        }
        var got = (await JsonAsync(await InvokeAsync(rest, connection, "get_object", new { key = "2026/q4 report+final.bin" }), 200)).GetProperty("output");
        Assert.Equal("base64", got.GetProperty("encoding").GetString());
        Assert.Equal(bytes, Convert.FromBase64String(got.GetProperty("body").GetString()!));

        await JsonAsync(await InvokeAsync(rest, connection, "put_object", new { key = "notes/é.txt", body = "héllo\n" }), 200);
        var text = (await JsonAsync(await InvokeAsync(rest, connection, "get_object", new { key = "notes/é.txt" }), 200)).GetProperty("output");
        Assert.Equal(("utf8", "héllo\n"), (text.GetProperty("encoding").GetString(), text.GetProperty("body").GetString()));

        for (var i = 0; i < 5; i++) await JsonAsync(await InvokeAsync(rest, connection, "put_object", new { key = $"logs/{i}.log", body = new string('x', i + 1) }), 200);
        var keys = new List<string>();
        string? cursor = null;
        var pages = 0;
        do
        {
            var page = (await JsonAsync(await InvokeAsync(rest, connection, "list_objects",
                cursor is null ? new { prefix = "logs/", limit = 2 } : (object)new { prefix = "logs/", limit = 2, cursor }), 200)).GetProperty("output");
            var objects = page.GetProperty("objects").EnumerateArray().ToList();
            Assert.True(objects.Count <= 2);
            keys.AddRange(objects.Select(o => o.GetProperty("key").GetString()!));
            Assert.All(objects, o => Assert.Equal(o.GetProperty("key").GetString()![5] - '0' + 1, o.GetProperty("size").GetInt32()));
            cursor = page.GetProperty("truncated").GetBoolean() ? page.GetProperty("next_cursor").GetString() : null;
            pages++;
        }
        while (cursor is not null);
        Assert.Equal(3, pages);
        Assert.Equal(Enumerable.Range(0, 5).Select(i => $"logs/{i}.log"), keys);
        var all = (await JsonAsync(await InvokeAsync(rest, connection, "list_objects", new { }), 200)).GetProperty("output");
        Assert.Equal(7, all.GetProperty("objects").GetArrayLength());
    }

    [Fact]
    public async Task Refuses_an_object_over_the_cap_a_key_outside_the_bucket_a_wrong_secret_a_blocked_address_and_a_token()
    {
        await using var s3 = await S3Service.StartAsync("capped");
        var (rest, key) = await TenantAsync();
        var connection = await CreateConnectionAsync(rest, new
        {
            name = "capped",
            connector = "s3",
            configuration = new { service_url = s3.Url, bucket = "capped", max_object_bytes = 1000 },
            credential_ref = key,
        });
        using (var client = s3.Client())
        {
            await client.PutObjectAsync(new PutObjectRequest { BucketName = "capped", Key = "big.bin", InputStream = new MemoryStream(new byte[2000]), UseChunkEncoding = false });
            await client.PutObjectAsync(new PutObjectRequest { BucketName = "capped", Key = "small.bin", InputStream = new MemoryStream(new byte[1000]), UseChunkEncoding = false });
        }
        var tooLarge = await JsonAsync(await InvokeAsync(rest, connection, "get_object", new { key = "big.bin" }), 422);
        Assert.Equal("object_too_large", tooLarge.GetProperty("code").GetString());
        Assert.Equal(2000, tooLarge.GetProperty("size").GetInt64());
        Assert.Equal(1000, tooLarge.GetProperty("max_object_bytes").GetInt32());
        Assert.Equal(1000, (await JsonAsync(await InvokeAsync(rest, connection, "get_object", new { key = "small.bin" }), 200)).GetProperty("output").GetProperty("size").GetInt32());
        var putTooLarge = await JsonAsync(await InvokeAsync(rest, connection, "put_object", new { key = "big2.txt", body = new string('y', 1001) }), 422);
        Assert.Equal("object_too_large", putTooLarge.GetProperty("code").GetString());

        foreach (var outside in new[] { "../other/secret", "a/./b", "a/..", "x\u0001" })
        {
            var refused = await JsonAsync(await InvokeAsync(rest, connection, "get_object", new { key = outside }), 400);
            Assert.Equal(("validation_failed", "input_arguments"), (refused.GetProperty("code").GetString(), refused.GetProperty("rule").GetString()));
        }
        var notBase64 = await JsonAsync(await InvokeAsync(rest, connection, "put_object", new { key = "k", body = "not base64!", encoding = "base64" }), 400);
        Assert.Equal("input_arguments", notBase64.GetProperty("rule").GetString());
        var missing = await JsonAsync(await InvokeAsync(rest, connection, "get_object", new { key = "nope" }), 502);
        Assert.Equal("NoSuchKey", missing.GetProperty("s3_error").GetString());

        // s3rver checks the access key id (it does not verify Signature V4 itself).
        var wrongSecret = await StoreCredentialAsync(rest, new { name = "wrong", type = "custom", fields = new { access_key_id = "AKIA-UNKNOWN", secret_access_key = "not-the-secret" } });
        var wrong = await CreateConnectionAsync(rest, new { name = "wrong", connector = "s3", configuration = new { service_url = s3.Url, bucket = "capped" }, credential_ref = wrongSecret });
        var signature = await JsonAsync(await InvokeAsync(rest, wrong, "list_objects", new { }), 502);
        Assert.Equal("InvalidAccessKeyId", signature.GetProperty("s3_error").GetString());
        Assert.DoesNotContain("not-the-secret", signature.ToString(), StringComparison.Ordinal);
        Assert.False((await JsonAsync(await rest.PostAsync($"/connections/{wrong.GetProperty("id")}/test", null), 200)).GetProperty("ok").GetBoolean());

        foreach (var blocked in new[] { "http://10.0.0.5:9000", "https://169.254.169.254", "https://[fd00::5]" })
        {
            var refused = await JsonAsync(await rest.PostAsJsonAsync("/connections", new { name = "b" + Guid.NewGuid().ToString("N")[..8], connector = "s3", configuration = new { service_url = blocked, bucket = "capped" }, credential_ref = key }), 422);
            Assert.Equal("ssrf_blocked", refused.GetProperty("code").GetString());
        }
        var token = await StoreCredentialAsync(rest, new { name = "token", type = "bearer_token", secret = "t" });
        var tokenConnection = await CreateConnectionAsync(rest, new { name = "token", connector = "s3", configuration = new { service_url = s3.Url, bucket = "capped" }, credential_ref = token });
        Assert.Equal("credential_denied", (await JsonAsync(await InvokeAsync(rest, tokenConnection, "list_objects", new { }), 403)).GetProperty("code").GetString());
    }
}
