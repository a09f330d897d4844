using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Integrations.Common;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Network;
using Integrations.Infrastructure.Vault;
using Npgsql;
using Polly;
using Polly.Retry;

namespace Integrations.Features.Connectors.Adapters;

/// <summary>
/// The webhook connector: <c>deliver</c> POSTs <c>{"event", "payload", "delivery_id", "sent_at"}</c> to the
/// connection's URL, signed (<see cref="WebhookSignature"/>) with the connection's secret; a 5xx, 408 or 429 answer, a
/// timeout or a connection failure is retried (Polly: exponential backoff with jitter) up to the connection's
/// <c>max_attempts</c>, after which the delivery is <c>dead_letter</c>; another 4xx is <c>failed</c> at once. Every
/// attempt is logged (<c>webhook_delivery_attempts</c>) as it happens, whatever becomes of the call. <c>redeliver</c>
/// sends a logged delivery's body again, freshly signed. Egress through the <see cref="SsrfGuard"/>'s handler.
/// </summary>
public sealed class WebhookAdapter(SsrfGuard guard, NpgsqlDataSource db) : IConnectorAdapter, IDisposable
{
    public const string Delivered = "delivered";
    public const string Failed = "failed";
    public const string DeadLetter = "dead_letter";

    private const int DefaultMaxAttempts = 5;
    private static readonly TimeSpan DefaultRetryDelay = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(10);

    private readonly HttpClient _client = new(guard.CreateHandler()) { Timeout = Timeout.InfiniteTimeSpan };

    public string Name => "webhook";

    public void Dispose() => _client.Dispose();

    public async Task<Error?> CheckConfigurationAsync(ConnectionEndpoint connection, CancellationToken ct)
    {
        if (!Uri.TryCreate(connection.Setting("url"), UriKind.Absolute, out var url) || url.UserInfo.Length > 0 || url.Fragment.Length > 0)
        {
            return Error.Validation("configuration.url", "An absolute http(s) URL without user info or fragment.");
        }
        var checkedUrl = await guard.CheckAsync(url, ct);
        return checkedUrl.IsSuccess ? null : checkedUrl.Error;
    }

    /// <summary>A signed <c>ping</c> event, sent once: any answer below 300 is a receiver that took it.</summary>
    public async Task<ConnectionProbe> TestAsync(ConnectionEndpoint connection, ResolvedCredential? credential, CancellationToken ct)
    {
        var body = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new { @event = "ping", payload = new { }, delivery_id = Guid.Empty, sent_at = DateTimeOffset.UtcNow }));
        var attempt = await SendOnceAsync(connection, credential, Guid.Empty, "ping", body, ct);
        return attempt.Status is >= 200 and < 300
            ? new ConnectionProbe(true, $"The receiver answered {attempt.Status}.", attempt.Status)
            : new ConnectionProbe(false, attempt.Error ?? $"The receiver answered {attempt.Status}.", attempt.Status);
    }

    public async Task<Result<ActionOutput>> InvokeAsync(ActionCall call, CancellationToken ct)
    {
        var tenantId = call.Connection.TenantId;
        Guid deliveryId;
        string @event;
        byte[] body;
        if (call.Action.Name == "redeliver")
        {
            if (!Guid.TryParse(call.Arguments.GetProperty("delivery_id").GetString(), out deliveryId)) return Error.NotFound("delivery");
            await using var connection = await db.OpenConnectionAsync(ct);
            await using var batch = TenantSession.Batch(connection, tenantId);
            batch.BatchCommands.Add(new NpgsqlBatchCommand("SELECT event, body FROM webhook_deliveries WHERE tenant_id = $1 AND id = $2 AND connection_id = $3")
            {
                Parameters = { new() { Value = tenantId }, new() { Value = deliveryId }, new() { Value = call.Connection.Id } },
            });
            await using var reader = await batch.ExecuteReaderAsync(ct);
            await reader.NextResultAsync(ct);
            if (!await reader.ReadAsync(ct)) return Error.NotFound("delivery");
            @event = reader.GetString(0);
            body = Encoding.UTF8.GetBytes(reader.GetString(1));
        }
        else
        {
            deliveryId = call.InvocationId;
            @event = call.Arguments.GetProperty("event").GetString()!;
            var document = new JsonObject
            {
                ["event"] = @event,
                ["payload"] = JsonNode.Parse(call.Arguments.GetProperty("payload").GetRawText()),
                ["delivery_id"] = deliveryId,
                ["sent_at"] = DateTimeOffset.UtcNow,
            };
            body = Encoding.UTF8.GetBytes(document.ToJsonString());
            await ExecuteAsync(tenantId, """
                INSERT INTO webhook_deliveries (id, tenant_id, connection_id, event, body, status) VALUES ($2, $1, $3, $4, $5, 'pending')
                """, ct, deliveryId, call.Connection.Id, @event, Encoding.UTF8.GetString(body));
        }
        return await DeliverAsync(call, deliveryId, @event, body, ct);
    }

    private async Task<Result<ActionOutput>> DeliverAsync(ActionCall call, Guid deliveryId, string @event, byte[] body, CancellationToken ct)
    {
        var connection = call.Connection;
        var maxAttempts = connection.Number("max_attempts") ?? DefaultMaxAttempts;
        var attempts = 0;
        Attempt last = new(null, null, false);
        var pipeline = new ResiliencePipelineBuilder<Attempt>()
            .AddRetry(new RetryStrategyOptions<Attempt>
            {
                MaxRetryAttempts = Math.Max(maxAttempts - 1, 0) is var retries and > 0 ? retries : 1,
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                Delay = connection.Number("retry_delay_ms") is { } ms ? TimeSpan.FromMilliseconds(ms) : DefaultRetryDelay,
                MaxDelay = TimeSpan.FromMinutes(1),
                ShouldHandle = args => ValueTask.FromResult(maxAttempts > 1 && args.Outcome.Result is { Retryable: true }),
            })
            .Build();
        await pipeline.ExecuteAsync(async token =>
        {
            attempts++;
            var started = Stopwatch.GetTimestamp();
            last = await SendOnceAsync(connection, call.Credential, deliveryId, @event, body, token);
            await ExecuteAsync(connection.TenantId, """
                INSERT INTO webhook_delivery_attempts (tenant_id, delivery_id, attempt,
                    status_code, error, duration_ms) VALUES ($1, $2, (SELECT coalesce(max(attempt), 0) + 1 FROM webhook_delivery_attempts WHERE tenant_id = $1 AND delivery_id = $2), $3, $4, $5)
                """, token, deliveryId, (object?)last.Status ?? DBNull.Value, (object?)last.Error ?? DBNull.Value,
                Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            return last;
        }, ct);

        var status = last.Status is >= 200 and < 300 ? Delivered : last.Retryable ? DeadLetter : Failed;
        await ExecuteAsync(connection.TenantId, """
            UPDATE webhook_deliveries SET status = $3, attempts = attempts + $4, last_status = $5, last_error = $6, updated_at = now(),
                delivered_at = CASE WHEN $3 = 'delivered' THEN now() ELSE delivered_at END
            WHERE tenant_id = $1 AND id = $2
            """, CancellationToken.None, deliveryId, status, attempts, (object?)last.Status ?? DBNull.Value, (object?)last.Error ?? DBNull.Value);
        var facts = new Dictionary<string, object?> { ["delivery_id"] = deliveryId, ["delivery_status"] = status, ["attempts"] = attempts, ["upstream_status"] = last.Status };
        if (status != Delivered)
        {
            var why = last.Error ?? $"the receiver answered {last.Status}";
            return Error.UpstreamError(status == DeadLetter
                ? $"The delivery {deliveryId} is dead-lettered after {attempts} attempts ({why}); redeliver it when the receiver is back."
                : $"The receiver refused the delivery {deliveryId} ({why}); it is not retried.") with
            { Extensions = facts };
        }
        var output = JsonSerializer.SerializeToElement(new { delivery_id = deliveryId, status, attempts, response_status = last.Status });
        return new ActionOutput(output, facts);
    }

    private sealed record Attempt(int? Status, string? Error, bool Retryable);

    private async Task<Attempt> SendOnceAsync(ConnectionEndpoint connection, ResolvedCredential? credential, Guid deliveryId, string @event, byte[] body, CancellationToken ct)
    {
        var timeout = connection.Number("timeout_ms") is { } ms ? TimeSpan.FromMilliseconds(ms) : DefaultTimeout;
        var timestamp = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        using var message = new HttpRequestMessage(HttpMethod.Post, connection.Setting("url"));
        message.Content = new ByteArrayContent(body);
        message.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json") { CharSet = "utf-8" };
        message.Headers.Add(WebhookSignature.TimestampHeader, timestamp.ToString(System.Globalization.CultureInfo.InvariantCulture));
        message.Headers.Add(WebhookSignature.DeliveryHeader, deliveryId.ToString());
        message.Headers.Add(WebhookSignature.EventHeader, @event);
        if (credential?.Token is { } secret) message.Headers.Add(WebhookSignature.SignatureHeader, WebhookSignature.Sign(secret, timestamp, body));
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(timeout);
        try
        {
            using var response = await _client.SendAsync(message, HttpCompletionOption.ResponseHeadersRead, deadline.Token);
            var status = (int)response.StatusCode;
            return new Attempt(status, null, status >= 500 || status is 408 or 429);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            return new Attempt(null, $"no answer within {timeout.TotalMilliseconds} ms", true);
        }
        catch (HttpRequestException e) when (SsrfGuard.IsBlocked(e))
        {
            return new Attempt(null, "the address is not allowed (ssrf_blocked)", false);
        }
        catch (HttpRequestException e)
        {
            return new Attempt(null, $"the receiver could not be reached ({e.HttpRequestError})", true);
        }
    }

    private async Task ExecuteAsync(string tenantId, string sql, CancellationToken ct, params object[] values)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        await using var batch = TenantSession.Batch(connection, tenantId);
        var command = new NpgsqlBatchCommand(sql);
        command.Parameters.Add(new NpgsqlParameter { Value = tenantId });
        foreach (var value in values) command.Parameters.Add(new NpgsqlParameter { Value = value });
        batch.BatchCommands.Add(command);
        await batch.ExecuteNonQueryAsync(ct);
    }
}
