using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Integrations.Common;
using Integrations.Infrastructure.Network;
using Integrations.Infrastructure.Vault;

namespace Integrations.Features.Connectors.Adapters;

/// <summary>
/// The Slack connector: <c>chat.postMessage</c> (and <c>auth.test</c> for connections.test) on the Web API with the
/// connection's bot token. Slack answers 200 with <c>ok: false</c> and an error code for what it refuses; that is an
/// upstream error carrying Slack's code. The base URL is configurable (tests point it at a local fake of the API).
/// </summary>
public sealed class SlackAdapter(SsrfGuard guard) : IConnectorAdapter, IDisposable
{
    public const string DefaultBaseUrl = "https://slack.com/api";

    private static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(10);

    private readonly HttpClient _client = new(guard.CreateHandler()) { Timeout = Timeout.InfiniteTimeSpan };

    public string Name => "slack";

    public void Dispose() => _client.Dispose();

    public async Task<Error?> CheckConfigurationAsync(ConnectionEndpoint connection, CancellationToken ct)
    {
        if (BaseUrl(connection) is not { } url) return Error.Validation("configuration.base_url", "An absolute http(s) URL without user info, query or fragment.");
        var checkedUrl = await guard.CheckAsync(url, ct);
        return checkedUrl.IsSuccess ? null : checkedUrl.Error;
    }

    public async Task<ConnectionProbe> TestAsync(ConnectionEndpoint connection, ResolvedCredential? credential, CancellationToken ct)
    {
        var answer = await CallAsync(connection, credential, "auth.test", new { }, ct);
        return answer.IsSuccess
            ? new ConnectionProbe(true, $"Slack accepted the token (team {Text(answer.Value, "team") ?? "?"}).", 200)
            : new ConnectionProbe(false, answer.Error!.Detail ?? answer.Error.Code);
    }

    public async Task<Result<ActionOutput>> InvokeAsync(ActionCall call, CancellationToken ct)
    {
        var arguments = call.Arguments;
        var message = new Dictionary<string, string?>
        {
            ["channel"] = Text(arguments, "channel"),
            ["text"] = Text(arguments, "text"),
        };
        if (Text(arguments, "thread_ts") is { } thread) message["thread_ts"] = thread;
        var answer = await CallAsync(call.Connection, call.Credential, "chat.postMessage", message, ct);
        if (!answer.IsSuccess) return answer.Error!;
        var output = JsonSerializer.SerializeToElement(new { ok = true, channel = Text(answer.Value, "channel"), ts = Text(answer.Value, "ts") });
        return new ActionOutput(output, new Dictionary<string, object?> { ["slack_ts"] = Text(answer.Value, "ts") });
    }

    private async Task<Result<JsonElement>> CallAsync(ConnectionEndpoint connection, ResolvedCredential? credential, string method, object body, CancellationToken ct)
    {
        var baseUrl = BaseUrl(connection)!;
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(baseUrl.AbsoluteUri.TrimEnd('/') + "/" + method));
        request.Content = JsonContent.Create(body);
        if (credential?.Token is { } token) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        var timeout = connection.Number("timeout_ms") is { } ms ? TimeSpan.FromMilliseconds(ms) : DefaultTimeout;
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(timeout);
        try
        {
            using var response = await _client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, deadline.Token);
            var bytes = await HttpAdapter.ReadCappedAsync(response, deadline.Token);
            if (bytes is null) return Error.UpstreamError("Slack's answer is larger than the connector reads.");
            if (!response.IsSuccessStatusCode) return Error.UpstreamError($"Slack answered {(int)response.StatusCode}.");
            var answer = JsonDocument.Parse(bytes).RootElement.Clone();
            if (answer.TryGetProperty("ok", out var ok) && ok.ValueKind == JsonValueKind.True) return answer;
            var code = Text(answer, "error") ?? "unknown_error";
            return Error.UpstreamError($"Slack refused {method}: {code}.") with { Extensions = new Dictionary<string, object?> { ["slack_error"] = code } };
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            return Error.UpstreamTimeout($"Slack did not answer within {timeout.TotalMilliseconds} ms.");
        }
        catch (HttpRequestException e) when (SsrfGuard.IsBlocked(e))
        {
            return Error.SsrfBlocked(e.InnerException?.Message ?? "The address is not allowed.");
        }
        catch (HttpRequestException e)
        {
            return Error.UpstreamUnreachable($"Slack could not be reached ({e.HttpRequestError}).");
        }
        catch (JsonException)
        {
            return Error.UpstreamError("Slack's answer is not JSON.");
        }
    }

    private static Uri? BaseUrl(ConnectionEndpoint connection) =>
        Uri.TryCreate(connection.Setting("base_url") ?? DefaultBaseUrl, UriKind.Absolute, out var url)
        && (url.Scheme == Uri.UriSchemeHttp || url.Scheme == Uri.UriSchemeHttps) && url.UserInfo.Length == 0 && url.Query.Length == 0 && url.Fragment.Length == 0
            ? url
            : null;

    private static string? Text(JsonElement element, string name) =>
        element.ValueKind == JsonValueKind.Object && element.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;
}
