using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Integrations.Common;
using Integrations.Infrastructure.Network;
using Integrations.Infrastructure.Vault;

namespace Integrations.Features.Connectors.Adapters;

/// <summary>
/// The generic REST connector. An action's request template is filled from its arguments: a value in the path is one
/// encoded segment (never a <c>/</c>, never <c>.</c> or <c>..</c>), query values are form-encoded, header values may not
/// break the line, and body values are JSON — so no argument can change the scheme, host or port of the base URL, which
/// is checked once more on the finished URL. The credential goes in the header its type calls for: bearer (also OAuth2
/// client credentials, whose access token the vault obtained), basic, or an API-key header. Egress goes through the
/// <see cref="SsrfGuard"/>'s handler (re-resolved and re-checked per connection, no redirects followed).
/// </summary>
public sealed class HttpAdapter(SsrfGuard guard) : IConnectorAdapter, IDisposable
{
    public const string DefaultApiKeyHeader = "X-API-Key";

    /// <summary>The most of a response body an action reads; a larger answer is an upstream error, not a truncated one.</summary>
    public const int MaxResponseBytes = 1 << 20;

    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(15);

    private static readonly HashSet<string> ReservedHeaders = new(StringComparer.OrdinalIgnoreCase)
    {
        "Authorization", "Host", "Content-Length", "Content-Type", "Transfer-Encoding", "Connection", "Cookie", "Proxy-Authorization",
    };

    private readonly HttpClient _client = new(guard.CreateHandler()) { Timeout = Timeout.InfiniteTimeSpan };

    public string Name => Connector.Http;

    public void Dispose()
    {
        _client.Dispose();
        foreach (var client in _byIdentity.Values) client.Dispose();
    }

    public async Task<Error?> CheckConfigurationAsync(ConnectionEndpoint connection, CancellationToken ct)
    {
        if (BaseUrl(connection) is not { } baseUrl)
        {
            return Error.Validation("configuration.base_url", "An absolute http(s) URL without user info, query or fragment.");
        }
        var header = connection.Setting("api_key_header");
        if (header is not null && (ReservedHeaders.Contains(header) || !IsToken(header)))
        {
            return Error.Validation("configuration.api_key_header", "A header name (not Authorization, Host or a framing header).");
        }
        var checkedUrl = await guard.CheckAsync(baseUrl, ct);
        return checkedUrl.IsSuccess ? null : checkedUrl.Error;
    }

    public async Task<ConnectionProbe> TestAsync(ConnectionEndpoint connection, ResolvedCredential? credential, CancellationToken ct)
    {
        var baseUrl = BaseUrl(connection)!;
        var path = connection.Setting("test_path");
        var url = path is null ? baseUrl : new Uri(baseUrl, baseUrl.AbsolutePath.TrimEnd('/') + "/" + path.TrimStart('/'));
        if (!SameOrigin(baseUrl, url)) return new ConnectionProbe(false, "test_path leaves the base URL.");
        using var message = new HttpRequestMessage(HttpMethod.Get, url);
        Authorize(message, connection, credential);
        var sent = await SendAsync(message, connection, credential, ct);
        if (!sent.IsSuccess) return new ConnectionProbe(false, $"{sent.Error!.Code}: {sent.Error.Detail}");
        using var response = sent.Value;
        var status = (int)response.StatusCode;
        return status < 500 && status is not 401 and not 403
            ? new ConnectionProbe(true, $"The service answered {status}.", status)
            : new ConnectionProbe(false, $"The service answered {status}.", status);
    }

    public Error? CheckArguments(ConnectionEndpoint connection, ConnectorAction action, JsonElement arguments)
    {
        if (action.Request is not { } template || BaseUrl(connection) is not { } baseUrl) return null;
        var built = Build(baseUrl, template, arguments);
        if (!built.IsSuccess) return built.Error;
        built.Value.Dispose();
        return null;
    }

    public async Task<Result<ActionOutput>> InvokeAsync(ActionCall call, CancellationToken ct)
    {
        var template = call.Action.Request!;
        var built = Build(BaseUrl(call.Connection)!, template, call.Arguments);
        if (!built.IsSuccess) return built.Error!;
        using var message = built.Value;
        Authorize(message, call.Connection, call.Credential);
        var sent = await SendAsync(message, call.Connection, call.Credential, ct);
        if (!sent.IsSuccess) return sent.Error!;
        using var response = sent.Value;
        var status = (int)response.StatusCode;
        var body = await ReadCappedAsync(response, ct);
        if (body is null) return Error.UpstreamError($"The answer is larger than {MaxResponseBytes} bytes.");
        if (status >= 300)
        {
            return Error.UpstreamError($"The service answered {status} {response.ReasonPhrase}.") with
            {
                Extensions = new Dictionary<string, object?> { [Error.UpstreamStatus] = status },
            };
        }
        var output = new JsonObject
        {
            ["status"] = status,
            ["content_type"] = response.Content.Headers.ContentType?.MediaType,
            ["body"] = ParseBody(body, response.Content.Headers.ContentType?.MediaType),
        };
        return new ActionOutput(JsonSerializer.SerializeToElement(output),
            new Dictionary<string, object?> { [Error.UpstreamStatus] = status, ["response_bytes"] = body.Length });
    }

    /// <summary>The request an action's template makes of its arguments, or the validation error of the argument that cannot go where the template puts it.</summary>
    internal static Result<HttpRequestMessage> Build(Uri baseUrl, HttpRequestTemplate template, JsonElement arguments)
    {
        var errors = new Dictionary<string, string[]>();
        var path = ConnectorManifest.Fill(template.Path, name =>
        {
            var value = Scalar(arguments, name);
            if (value is null || value.Length == 0 || value is "." or "..")
            {
                errors[$"arguments.{name}"] = ["A path value must be a non-empty string or number other than '.' and '..'."];
                return "_";
            }
            return Uri.EscapeDataString(value);
        });
        var query = new StringBuilder();
        foreach (var (key, valueTemplate) in template.Query ?? new Dictionary<string, string>())
        {
            var placeholders = ConnectorManifest.PlaceholdersIn(valueTemplate).ToList();
            if (placeholders.Count > 0 && placeholders.All(p => Scalar(arguments, p) is null)) continue; // an optional argument not given
            var value = ConnectorManifest.Fill(valueTemplate, name => Scalar(arguments, name) ?? string.Empty);
            query.Append(query.Length == 0 ? '?' : '&').Append(Uri.EscapeDataString(key)).Append('=').Append(Uri.EscapeDataString(value));
        }
        var url = new Uri($"{baseUrl.GetLeftPart(UriPartial.Authority)}{baseUrl.AbsolutePath.TrimEnd('/')}{path}{query}");
        if (!SameOrigin(baseUrl, url) || !url.AbsolutePath.StartsWith(baseUrl.AbsolutePath.TrimEnd('/'), StringComparison.Ordinal))
        {
            errors["arguments"] = ["The arguments would leave the connection's base URL."];
        }
        var message = new HttpRequestMessage(new HttpMethod(template.Method), url);
        foreach (var (name, valueTemplate) in template.Headers ?? new Dictionary<string, string>())
        {
            var value = ConnectorManifest.Fill(valueTemplate, argument => Scalar(arguments, argument) ?? string.Empty);
            if (value.AsSpan().IndexOfAny('\r', '\n', '\0') >= 0 || ReservedHeaders.Contains(name))
            {
                errors[$"headers.{name}"] = ["A header value cannot contain line breaks, and the template cannot set a reserved header."];
                continue;
            }
            message.Headers.TryAddWithoutValidation(name, value);
        }
        if (template.Body is { } body)
        {
            var filled = FillBody(JsonNode.Parse(body.GetRawText()), arguments);
            message.Content = new StringContent(filled?.ToJsonString() ?? "null", Encoding.UTF8, "application/json");
        }
        if (errors.Count == 0) return message;
        message.Dispose();
        return Error.Validation(errors, "The arguments cannot be placed in the request.");
    }

    private static JsonNode? FillBody(JsonNode? node, JsonElement arguments)
    {
        switch (node)
        {
            case JsonObject obj:
                foreach (var (key, child) in obj.ToList()) obj[key] = FillBody(child, arguments);
                return obj;
            case JsonArray array:
                for (var i = 0; i < array.Count; i++) array[i] = FillBody(array[i]?.DeepClone(), arguments);
                return array;
            case JsonValue value when value.TryGetValue<string>(out var text):
                var only = ConnectorManifest.PlaceholdersIn(text).ToList();
                if (only.Count == 1 && text == "{" + only[0] + "}")
                {
                    return arguments.ValueKind == JsonValueKind.Object && arguments.TryGetProperty(only[0], out var whole)
                        ? JsonNode.Parse(whole.GetRawText())
                        : null;
                }
                return JsonValue.Create(ConnectorManifest.Fill(text, name => Scalar(arguments, name) ?? string.Empty));
            default:
                return node?.DeepClone();
        }
    }

    /// <summary>An argument as text for a path, query or header: strings as they are, numbers and booleans as JSON writes them; null otherwise.</summary>
    private static string? Scalar(JsonElement arguments, string name)
    {
        if (arguments.ValueKind != JsonValueKind.Object || !arguments.TryGetProperty(name, out var value)) return null;
        return value.ValueKind switch
        {
            JsonValueKind.String => value.GetString(),
            JsonValueKind.Number => value.GetRawText(),
            JsonValueKind.True => "true",
            JsonValueKind.False => "false",
            _ => null,
        };
    }

    private static void Authorize(HttpRequestMessage message, ConnectionEndpoint connection, ResolvedCredential? credential)
    {
        if (credential is null) return;
        switch (credential.Type)
        {
            case CredentialTypes.BasicAuth:
                var pair = Convert.ToBase64String(Encoding.UTF8.GetBytes($"{credential.Username}:{credential.Password}"));
                message.Headers.Authorization = new AuthenticationHeaderValue("Basic", pair);
                break;
            case CredentialTypes.ClientCertificate:
                break; // presented in the TLS handshake (SendAsync), not in a header
            case CredentialTypes.ApiKey or CredentialTypes.Custom or CredentialTypes.Opaque:
                message.Headers.TryAddWithoutValidation(connection.Setting("api_key_header") ?? DefaultApiKeyHeader, credential.Token);
                break;
            default:
                message.Headers.Authorization = new AuthenticationHeaderValue("Bearer", credential.Token);
                break;
        }
    }

    private async Task<Result<HttpResponseMessage>> SendAsync(HttpRequestMessage message, ConnectionEndpoint connection, ResolvedCredential? credential, CancellationToken ct)
    {
        var client = _client;
        if (credential?.Type == CredentialTypes.ClientCertificate)
        {
            var identity = ClientCertificate.Of(credential, DateTimeOffset.UtcNow);
            if (!identity.IsSuccess) return identity.Error!;
            client = ClientFor(identity.Value);
        }
        var timeout = connection.Number("timeout_ms") is { } ms ? TimeSpan.FromMilliseconds(ms) : DefaultTimeout;
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(timeout);
        try
        {
            var response = await client.SendAsync(message, HttpCompletionOption.ResponseHeadersRead, deadline.Token);
            return response;
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            return Error.UpstreamTimeout($"The service did not answer within {timeout.TotalMilliseconds.ToString(CultureInfo.InvariantCulture)} ms.");
        }
        catch (HttpRequestException e) when (SsrfGuard.IsBlocked(e))
        {
            return Error.SsrfBlocked(e.InnerException?.Message ?? "The address is not allowed.");
        }
        catch (HttpRequestException e) when (credential?.Type == CredentialTypes.ClientCertificate && ClientCertificate.RefusalDetail(e) is { } refusal)
        {
            return Error.UpstreamUnreachable($"The service could not be reached: {refusal}.");
        }
        catch (HttpRequestException e)
        {
            return Error.UpstreamUnreachable($"The service could not be reached ({e.HttpRequestError}).");
        }
    }

    private const int MaxIdentities = 1_000;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, HttpClient> _byIdentity = new(StringComparer.Ordinal);

    /// <summary>One client per certificate: its pooled connections are authenticated as that certificate only.</summary>
    private HttpClient ClientFor(ClientCertificate identity)
    {
        if (_byIdentity.TryGetValue(identity.Fingerprint, out var client)) return client;
        if (_byIdentity.Count >= MaxIdentities) _byIdentity.Clear(); // left to close their idle connections, not disposed mid-request
        return _byIdentity.GetOrAdd(identity.Fingerprint, _ => new HttpClient(guard.CreateHandler(certificate: identity)) { Timeout = Timeout.InfiniteTimeSpan });
    }

    /// <summary>The body, or null when it is larger than <see cref="MaxResponseBytes"/>.</summary>
    internal static async Task<byte[]?> ReadCappedAsync(HttpResponseMessage response, CancellationToken ct)
    {
        if (response.Content.Headers.ContentLength > MaxResponseBytes) return null;
        await using var stream = await response.Content.ReadAsStreamAsync(ct);
        using var buffer = new MemoryStream();
        var chunk = new byte[16 * 1024];
        int read;
        while ((read = await stream.ReadAsync(chunk, ct)) > 0)
        {
            if (buffer.Length + read > MaxResponseBytes) return null;
            buffer.Write(chunk, 0, read);
        }
        return buffer.ToArray();
    }

    private static JsonNode? ParseBody(byte[] body, string? mediaType)
    {
        if (body.Length == 0) return null;
        if (mediaType is not null && (mediaType == "application/json" || mediaType.EndsWith("+json", StringComparison.Ordinal)))
        {
            try
            {
                return JsonNode.Parse(body);
            }
            catch (JsonException)
            {
                // Not what it said it was: pass the text on rather than fail a call the service answered.
            }
        }
        return JsonValue.Create(Encoding.UTF8.GetString(body));
    }

    internal static Uri? BaseUrl(ConnectionEndpoint connection) =>
        Uri.TryCreate(connection.Setting("base_url"), UriKind.Absolute, out var url)
        && (url.Scheme == Uri.UriSchemeHttp || url.Scheme == Uri.UriSchemeHttps)
        && url.UserInfo.Length == 0 && url.Query.Length == 0 && url.Fragment.Length == 0
            ? url
            : null;

    private static bool SameOrigin(Uri a, Uri b) =>
        a.Scheme == b.Scheme && string.Equals(a.IdnHost, b.IdnHost, StringComparison.OrdinalIgnoreCase) && a.Port == b.Port;

    private static bool IsToken(string name) => name.Length is > 0 and <= 100 && name.All(c => c is > ' ' and < '\x7f' and not ':' and not '(' and not ')');
}
