using System.Globalization;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Integrations.Common;
using Integrations.Infrastructure.Network;
using Integrations.Infrastructure.Vault;
using MailKit;
using MailKit.Net.Smtp;
using MailKit.Security;
using MimeKit;

namespace Integrations.Features.Connectors.Adapters;

/// <summary>
/// The SMTP connector (MailKit): <c>send_email</c>, and connect + AUTH + NOOP for connections.test. The host is
/// resolved and judged by the <see cref="SsrfGuard"/> on every connection and MailKit is handed a socket already
/// connected to the judged address (the host name stays the TLS target), so a DNS answer that changes cannot lead
/// elsewhere. <c>starttls</c> and <c>tls</c> never fall back to plain text; <c>none</c> is allowed only where plain
/// http would be (a host the egress allow-list names), since the AUTH password crosses the wire with it.
/// </summary>
public sealed class SmtpAdapter(SsrfGuard guard) : IConnectorAdapter
{
    public const string StartTls = "starttls";
    public const string Tls = "tls";
    public const string Plain = "none";

    private static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(15);

    public string Name => "smtp";

    /// <summary>A connection's SMTP settings, read from a configuration its manifest's schema already accepted.</summary>
    private sealed record Settings(string Host, int Port, string Security, MailboxAddress From, X509Certificate2? Anchor, TimeSpan Timeout);

    public async Task<Error?> CheckConfigurationAsync(ConnectionEndpoint connection, CancellationToken ct)
    {
        var settings = Read(connection);
        if (!settings.IsSuccess) return settings.Error;
        var target = await TargetAsync(settings.Value, ct);
        return target.IsSuccess ? null : target.Error;
    }

    public async Task<ConnectionProbe> TestAsync(ConnectionEndpoint connection, ResolvedCredential? credential, CancellationToken ct)
    {
        var result = await WithClientAsync(connection, credential, async (client, _, token) =>
        {
            await client.NoOpAsync(token);
            return $"The server accepted the connection{(client.IsSecure ? " over TLS" : "")}{(credential is null ? "" : " and the credentials")}.";
        }, ct);
        return result.IsSuccess ? new ConnectionProbe(true, result.Value) : new ConnectionProbe(false, $"{result.Error!.Code}: {result.Error.Detail}");
    }

    public Error? CheckArguments(ConnectionEndpoint connection, ConnectorAction action, JsonElement arguments)
    {
        var invalid = Addresses(arguments, "to").Concat(Addresses(arguments, "cc")).Where(a => a.Mailbox is null).Select(a => a.Text).ToList();
        return invalid.Count > 0 ? Error.Validation("arguments.to", $"Not an e-mail address: {string.Join(", ", invalid)}.") : null;
    }

    public async Task<Result<ActionOutput>> InvokeAsync(ActionCall call, CancellationToken ct)
    {
        if (CheckArguments(call.Connection, call.Action, call.Arguments) is { } invalid) return invalid;
        var to = Addresses(call.Arguments, "to");
        var cc = Addresses(call.Arguments, "cc");

        return await WithClientAsync(call.Connection, call.Credential, async (client, settings, token) =>
        {
            using var message = new MimeMessage();
            message.From.Add(settings.From);
            message.To.AddRange(to.Select(a => a.Mailbox!));
            message.Cc.AddRange(cc.Select(a => a.Mailbox!));
            message.Subject = Text(call.Arguments, "subject");
            message.Body = new TextPart("plain") { Text = Text(call.Arguments, "text") };
            message.MessageId = MimeKit.Utils.MimeUtils.GenerateMessageId(settings.From.Domain);
            var answer = await client.SendAsync(message, token);
            var output = JsonSerializer.SerializeToElement(new
            {
                message_id = message.MessageId,
                recipients = to.Concat(cc).Select(a => a.Mailbox!.Address).ToList(),
                server_response = answer,
            });
            return new ActionOutput(output, new Dictionary<string, object?> { ["recipients"] = to.Count + cc.Count, ["smtp_message_id"] = message.MessageId });
        }, ct);
    }

    /// <summary>Connects to the judged address, secures and authenticates as configured, runs <paramref name="work"/>, and says what failed in the caller's words.</summary>
    private async Task<Result<T>> WithClientAsync<T>(
        ConnectionEndpoint connection, ResolvedCredential? credential, Func<SmtpClient, Settings, CancellationToken, Task<T>> work, CancellationToken ct)
    {
        var read = Read(connection);
        if (!read.IsSuccess) return read.Error!;
        var settings = read.Value;
        if (credential is not null && credential.Type != CredentialTypes.BasicAuth)
        {
            return CredentialErrors.Denied($"SMTP AUTH takes a basic_auth credential (username and password), not {credential.Type}.");
        }
        var target = await TargetAsync(settings, ct);
        if (!target.IsSuccess) return target.Error!;

        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(settings.Timeout);
        var stage = "connect";
        using var client = new SmtpClient { Timeout = (int)settings.Timeout.TotalMilliseconds, ServerCertificateValidationCallback = Validator(settings.Anchor) };
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(target.Value, settings.Port, deadline.Token);
            await client.ConnectAsync(socket, settings.Host, settings.Port, settings.Security switch
            {
                Tls => SecureSocketOptions.SslOnConnect,
                StartTls => SecureSocketOptions.StartTls,
                _ => SecureSocketOptions.None,
            }, deadline.Token);
            if (credential is not null)
            {
                stage = "authenticate";
                if (!client.Capabilities.HasFlag(SmtpCapabilities.Authentication))
                {
                    return Refused("auth_not_offered", "The server offers no SMTP AUTH; use credential none for a relay that needs no login.");
                }
                await client.AuthenticateAsync(credential.Username ?? string.Empty, credential.Password ?? string.Empty, deadline.Token);
            }
            stage = "send";
            var result = await work(client, settings, deadline.Token);
            await client.DisconnectAsync(quit: true, deadline.Token);
            return result;
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            return Error.UpstreamTimeout($"The SMTP server did not answer within {settings.Timeout.TotalMilliseconds.ToString(CultureInfo.InvariantCulture)} ms ({stage}).");
        }
        catch (AuthenticationException e)
        {
            return Refused("authentication_failed", $"The SMTP server refused the credentials: {e.Message}");
        }
        catch (SmtpCommandException e)
        {
            var refusedMailbox = e.Mailbox is null ? "" : $" for {e.Mailbox.Address}";
            return Refused(e.ErrorCode.ToString(), $"The SMTP server refused the message{refusedMailbox} ({(int)e.StatusCode}): {e.Message}") with
            {
                Extensions = new Dictionary<string, object?> { ["smtp_error"] = Snake(e.ErrorCode.ToString()), ["smtp_status"] = (int)e.StatusCode },
            };
        }
        catch (SslHandshakeException)
        {
            return Refused("tls_failed", $"TLS with {settings.Host} failed: the server's certificate is not trusted for this host name (ca_certificate adds a trust anchor), or it does not speak TLS on port {settings.Port}.");
        }
        catch (NotSupportedException)
        {
            return Refused("starttls_not_offered", "The server does not offer STARTTLS; the connection requires it (security: starttls).");
        }
        catch (SocketException e)
        {
            return Error.UpstreamUnreachable($"The SMTP server at {settings.Host}:{settings.Port} could not be reached ({e.SocketErrorCode}).");
        }
        catch (Exception e) when (e is SmtpProtocolException or IOException or ServiceNotConnectedException)
        {
            return Refused("protocol_error", $"The SMTP conversation broke off during {stage}.");
        }
        finally
        {
            socket.Dispose();
        }
    }

    private static Error Refused(string code, string detail) =>
        Error.UpstreamError(detail) with { Extensions = new Dictionary<string, object?> { ["smtp_error"] = Snake(code) } };

    private static string Snake(string name) => JsonNamingPolicy.SnakeCaseLower.ConvertName(name);

    /// <summary>The host's judged addresses, IPv4 first; plain text only to a host the allow-list opens.</summary>
    private async Task<Result<System.Net.IPAddress[]>> TargetAsync(Settings settings, CancellationToken ct)
    {
        if (settings.Security == Plain && !guard.AllowList.AllowsPlaintext(settings.Host))
        {
            return Error.SsrfBlocked($"SMTP without TLS is allowed only for hosts on {EgressAllowList.Section}; use starttls or tls for '{settings.Host}'.");
        }
        var addresses = await guard.CheckHostAsync(settings.Host, ct);
        return addresses.IsSuccess
            ? addresses.Value.OrderBy(a => a.AddressFamily == AddressFamily.InterNetwork ? 0 : 1).ToArray()
            : addresses.Error!;
    }

    private static Result<Settings> Read(ConnectionEndpoint connection)
    {
        var host = connection.Setting("host")?.Trim() ?? string.Empty;
        if (host.Length == 0 || Uri.CheckHostName(host.Trim('[', ']')) == UriHostNameType.Unknown)
        {
            return Error.Validation("configuration.host", "A host name or IP address.");
        }
        var security = connection.Setting("security") ?? StartTls;
        var port = connection.Number("port") ?? (security switch { Tls => 465, Plain => 25, _ => 587 });
        if (!MailboxAddress.TryParse(connection.Setting("from") ?? string.Empty, out var from) || !from.Address.Contains('@', StringComparison.Ordinal))
        {
            return Error.Validation("configuration.from", "An e-mail address ('ops@example.com' or 'Ops <ops@example.com>').");
        }
        X509Certificate2? anchor = null;
        if (connection.Setting("ca_certificate") is { } pem)
        {
            try
            {
                anchor = X509Certificate2.CreateFromPem(pem);
            }
            catch (CryptographicException)
            {
                return Error.Validation("configuration.ca_certificate", "A PEM certificate (-----BEGIN CERTIFICATE-----).");
            }
        }
        var timeout = connection.Number("timeout_ms") is { } ms ? TimeSpan.FromMilliseconds(ms) : DefaultTimeout;
        return new Settings(host, port, security, from, anchor, timeout);
    }

    /// <summary>
    /// The system's verdict, except that a chain ending at the configured anchor is trusted too; a name mismatch or an
    /// unreadable certificate is never forgiven.
    /// </summary>
    private static RemoteCertificateValidationCallback Validator(X509Certificate2? anchor) => (_, certificate, _, errors) =>
    {
        if (errors == SslPolicyErrors.None) return true;
        if (anchor is null || certificate is null || errors != SslPolicyErrors.RemoteCertificateChainErrors) return false;
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(anchor);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        using var leaf = new X509Certificate2(certificate);
        return chain.Build(leaf);
    };

    private sealed record Recipient(string Text, MailboxAddress? Mailbox);

    private static List<Recipient> Addresses(JsonElement arguments, string name) =>
        arguments.ValueKind == JsonValueKind.Object && arguments.TryGetProperty(name, out var list) && list.ValueKind == JsonValueKind.Array
            ? list.EnumerateArray().Select(item => item.GetString() ?? string.Empty)
                .Select(text => new Recipient(text, MailboxAddress.TryParse(text, out var mailbox) && mailbox.Address.Contains('@', StringComparison.Ordinal) ? mailbox : null))
                .ToList()
            : [];

    private static string Text(JsonElement arguments, string name) =>
        arguments.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString()! : string.Empty;
}
