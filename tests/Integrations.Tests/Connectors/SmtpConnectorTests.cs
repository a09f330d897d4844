using System.Net.Http.Json;
using System.Text.Json;
using Integrations.Tests.McpGateway;
using Integrations.Tests.Support;
using MimeKit;
using static Integrations.Tests.Connectors.ConnectorTestKit;

namespace Integrations.Tests.Connectors;

/// <summary>The smtp connector against a real SMTP server (smtp-server from npm): STARTTLS, implicit TLS and plain text, AUTH, and what it refuses.</summary>
public sealed class SmtpConnectorTests(McpGatewayFixture service) : IClassFixture<McpGatewayFixture>
{
    private static object Email(params string[] to) => new { to, subject = "Disk 91% on db-1", text = "Free space is low.\r\n.\r\nThe line above is a lone dot." };

    [Fact]
    public async Task Sends_over_starttls_with_auth_and_the_server_receives_the_sender_recipients_subject_and_body()
    {
        await using var smtp = await SmtpReceiver.StartAsync("starttls", "mailer", "s3cret-Pass");
        var tenant = TestEnvironment.NewTenant();
        var (_, rest) = await service.KeyAndClientAsync(tenant, McpGatewayFixture.AllScopes);
        var login = await StoreCredentialAsync(rest, new { name = "smtp", type = "basic_auth", username = "mailer", password = "s3cret-Pass" });
        var connection = await CreateConnectionAsync(rest, new
        {
            name = "mail",
            connector = "smtp",
            configuration = new { host = "127.0.0.1", port = smtp.Port, security = "starttls", from = "Ops <ops@example.com>", ca_certificate = SmtpReceiver.CertificatePem },
            credential_ref = login,
        });

        var test = await JsonAsync(await rest.PostAsync($"/connections/{connection.GetProperty("id")}/test", null), 200);
        Assert.True(test.GetProperty("ok").GetBoolean(), test.GetProperty("detail").GetString());

        var sent = await JsonAsync(await InvokeAsync(rest, connection, "send_email", new
        {
            to = new[] { "alice@example.com", "Bob <bob@example.org>" },
            cc = new[] { "carol@example.net" },
            subject = "Disk 91% on db-1 — ünïcode",
            text = "Free space is low.\r\n.\r\nThe line above is a lone dot.",
        }), 200);
        var received = Assert.Single(await smtp.MessagesAsync(1));
        Assert.Equal("ops@example.com", received.From);
        Assert.Equal(["alice@example.com", "bob@example.org", "carol@example.net"], received.To);
        Assert.Equal(("mailer", "PLAIN"), (received.User, received.AuthMethod));
        Assert.True(received.Secure);
        Assert.Equal("Disk 91% on db-1 — ünïcode", received.Message.Subject);
        var sender = Assert.IsType<MailboxAddress>(Assert.Single(received.Message.From));
        Assert.Equal(("Ops", "ops@example.com"), (sender.Name, sender.Address));
        Assert.Equal("Free space is low.\n.\nThe line above is a lone dot.", received.Message.TextBody?.ReplaceLineEndings("\n").TrimEnd());
        Assert.Equal(received.Message.MessageId, sent.GetProperty("output").GetProperty("message_id").GetString());
        Assert.Equal("write", sent.GetProperty("access").GetString());

        Assert.Equal(1, await OwnerSql.ScalarAsync<long>(service.Api.ConnectionString,
            "SELECT count(*) FROM connection_invocations WHERE tenant_id = @tenant AND action = 'send_email' AND outcome = 'completed'", new { tenant }));
        var details = await OwnerSql.QueryAsync<string>(service.Api.ConnectionString, "SELECT details::text FROM audit_events WHERE tenant_id = @tenant", new { tenant });
        Assert.DoesNotContain(details, d => d.Contains("s3cret-Pass", StringComparison.Ordinal));

        // Without the anchor the self-signed certificate is not trusted, and nothing is sent in the clear instead.
        var untrusted = await CreateConnectionAsync(rest, new
        {
            name = "mail-untrusted",
            connector = "smtp",
            configuration = new { host = "127.0.0.1", port = smtp.Port, from = "ops@example.com" },
            credential_ref = login,
        });
        var refused = await JsonAsync(await InvokeAsync(rest, untrusted, "send_email", Email("alice@example.com")), 502);
        Assert.Equal("tls_failed", refused.GetProperty("smtp_error").GetString());
        Assert.Single(smtp.Messages);
    }

    [Fact]
    public async Task Sends_with_tls_from_the_first_byte_and_without_encryption_to_a_host_the_allow_list_names()
    {
        var (_, rest) = await service.TenantAsync(McpGatewayFixture.AllScopes);
        await using var tls = await SmtpReceiver.StartAsync("tls", "mailer", "pw-tls");
        var login = await StoreCredentialAsync(rest, new { name = "smtp", type = "basic_auth", username = "mailer", password = "pw-tls" });
        var secure = await CreateConnectionAsync(rest, new
        {
            name = "mail-tls",
            connector = "smtp",
            configuration = new { host = "localhost", port = tls.Port, security = "tls", from = "ops@example.com", ca_certificate = SmtpReceiver.CertificatePem },
            credential_ref = login,
        });
        await JsonAsync(await InvokeAsync(rest, secure, "send_email", Email("alice@example.com")), 200);
        var received = Assert.Single(await tls.MessagesAsync(1));
        Assert.True(received.Secure);
        Assert.Equal("mailer", received.User);

        // A relay without STARTTLS and without AUTH: credential none, security none (127.0.0.1 is on the test allow-list).
        await using var relay = await SmtpReceiver.StartAsync("none");
        var plain = await CreateConnectionAsync(rest, new
        {
            name = "mail-relay",
            connector = "smtp",
            configuration = new { host = "127.0.0.1", port = relay.Port, security = "none", from = "ops@example.com" },
        });
        await JsonAsync(await InvokeAsync(rest, plain, "send_email", Email("bob@example.org")), 200);
        var relayed = Assert.Single(await relay.MessagesAsync(1));
        Assert.False(relayed.Secure);
        Assert.Null(relayed.User);
        Assert.Equal(["bob@example.org"], relayed.To);

        // The same relay under starttls: it offers no STARTTLS, so nothing is sent.
        var strict = await CreateConnectionAsync(rest, new
        {
            name = "mail-strict",
            connector = "smtp",
            configuration = new { host = "127.0.0.1", port = relay.Port, security = "starttls", from = "ops@example.com" },
        });
        var refused = await JsonAsync(await InvokeAsync(rest, strict, "send_email", Email("bob@example.org")), 502);
        Assert.Equal("starttls_not_offered", refused.GetProperty("smtp_error").GetString());
        Assert.Single(relay.Messages);
    }

    [Fact]
    public async Task Refuses_private_addresses_plain_text_to_other_hosts_bad_input_a_wrong_password_and_a_refused_recipient()
    {
        var (_, rest) = await service.TenantAsync(McpGatewayFixture.AllScopes);
        await using var smtp = await SmtpReceiver.StartAsync("starttls", "mailer", "right-pw");
        var wrong = await StoreCredentialAsync(rest, new { name = "wrong", type = "basic_auth", username = "mailer", password = "wrong-pw" });
        var right = await StoreCredentialAsync(rest, new { name = "right", type = "basic_auth", username = "mailer", password = "right-pw" });

        async Task<JsonElement> CreateAsync(object configuration, int status, string? credential = null) =>
            await JsonAsync(await rest.PostAsJsonAsync("/connections", new { name = "m" + Guid.NewGuid().ToString("N")[..8], connector = "smtp", configuration, credential_ref = credential }), status);

        foreach (var host in new[] { "10.1.2.3", "169.254.169.254", "[fd00::1]", "192.168.0.10" })
        {
            var blocked = await CreateAsync(new { host, from = "ops@example.com" }, 422);
            Assert.Equal("ssrf_blocked", blocked.GetProperty("code").GetString());
        }
        var cleartext = await CreateAsync(new { host = "93.184.216.34", security = "none", from = "ops@example.com" }, 422);
        Assert.Equal("ssrf_blocked", cleartext.GetProperty("code").GetString());
        Assert.Contains("starttls", cleartext.GetProperty("detail").GetString());

        Assert.Equal("validation_failed", (await CreateAsync(new { from = "ops@example.com" }, 400)).GetProperty("code").GetString());
        Assert.Equal("validation_failed", (await CreateAsync(new { host = "127.0.0.1", from = "not an address" }, 400)).GetProperty("code").GetString());
        Assert.Equal("validation_failed", (await CreateAsync(new { host = "127.0.0.1", from = "ops@example.com", security = "ssl3" }, 400)).GetProperty("code").GetString());
        Assert.Equal("validation_failed", (await CreateAsync(new { host = "127.0.0.1", from = "ops@example.com", ca_certificate = "not a pem" }, 400)).GetProperty("code").GetString());

        var configuration = new { host = "127.0.0.1", port = smtp.Port, from = "ops@example.com", ca_certificate = SmtpReceiver.CertificatePem };
        var badLogin = await CreateAsync(configuration, 201, wrong);
        var denied = await JsonAsync(await InvokeAsync(rest, badLogin, "send_email", Email("alice@example.com")), 502);
        Assert.Equal("authentication_failed", denied.GetProperty("smtp_error").GetString());
        Assert.DoesNotContain("wrong-pw", denied.ToString(), StringComparison.Ordinal);
        var probe = await JsonAsync(await rest.PostAsync($"/connections/{badLogin.GetProperty("id")}/test", null), 200);
        Assert.False(probe.GetProperty("ok").GetBoolean());

        var good = await CreateAsync(configuration, 201, right);
        var badInput = await JsonAsync(await InvokeAsync(rest, good, "send_email", new { to = new[] { "alice@example.com" }, subject = "x" }), 400);
        Assert.Equal("validation_failed", badInput.GetProperty("code").GetString());
        var notAddress = await JsonAsync(await InvokeAsync(rest, good, "send_email", Email("alice@example.com", "no at sign")), 400);
        Assert.Equal(("validation_failed", "input_arguments"), (notAddress.GetProperty("code").GetString(), notAddress.GetProperty("rule").GetString()));
        var bounced = await JsonAsync(await InvokeAsync(rest, good, "send_email", Email("alice@example.com", "x@reject.example")), 502);
        Assert.Equal(550, bounced.GetProperty("smtp_status").GetInt32());
        Assert.Empty(smtp.Messages);

        var token = await StoreCredentialAsync(rest, new { name = "token", type = "bearer_token", secret = "t" });
        var wrongType = await CreateAsync(configuration, 201, token);
        Assert.Equal("credential_denied", (await JsonAsync(await InvokeAsync(rest, wrongType, "send_email", Email("alice@example.com")), 403)).GetProperty("code").GetString());
    }
}
