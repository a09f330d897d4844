using System.Security.Cryptography;
using System.Text;
using Dapper;
using Integrations.Common;
using Integrations.Infrastructure.Database;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Integrations.Infrastructure.Http;

/// <summary>
/// <c>Idempotency-Key</c> on any <c>POST</c> (creates, actions, <c>tools.invoke</c>): the first request with a key runs,
/// and its answer (status, body, <c>Location</c>) is kept per tenant for <see cref="Lifetime"/>. A retry with the same key
/// and the same request (method, path, query and body) gets that answer again with <c>Idempotent-Replayed: true</c> and
/// nothing runs a second time; the same key with another request is 409 <c>idempotency_key_reused</c>; while the first
/// is still running, 409 <c>idempotency_key_in_progress</c>. A 5xx answer is not kept, so a retry runs again. Requests
/// without the header are untouched.
/// </summary>
public static class IdempotencyKeys
{
    public const string Header = "Idempotency-Key";
    public const string ReplayedHeader = "Idempotent-Replayed";
    public static readonly TimeSpan Lifetime = TimeSpan.FromHours(24);

    private const int MaxKeyLength = 255;

    private sealed class Stored
    {
        public required byte[] RequestHash { get; init; }
        public DateTime? CompletedAt { get; init; }
        public int? Status { get; init; }
        public string? ContentType { get; init; }
        public string? Location { get; init; }
        public byte[]? Body { get; init; }
    }

    public static async Task Apply(HttpContext context, RequestDelegate next)
    {
        if (!HttpMethods.IsPost(context.Request.Method) || !context.Request.Headers.TryGetValue(Header, out var values)
            || context.RequestServices.GetRequiredService<CallerContext>().Current is not { } caller)
        {
            await next(context);
            return;
        }
        var key = values.ToString();
        if (key.Length is 0 or > MaxKeyLength || !key.All(c => c is >= '!' and <= '~'))
        {
            await Problems.WriteAsync(context, Error.Validation("Idempotency-Key", $"1-{MaxKeyLength} visible ASCII characters."));
            return;
        }

        context.Request.EnableBuffering(bufferThreshold: 64 * 1024, bufferLimit: RequestBodyLimit.MaxBytes);
        var requestHash = await HashAsync(context.Request, context.RequestAborted);
        context.Request.Body.Position = 0;

        var dataSource = context.RequestServices.GetRequiredService<NpgsqlDataSource>();
        var existing = await ClaimAsync(dataSource, caller.TenantId, key, requestHash, context.RequestAborted);
        if (existing is not null)
        {
            await AnswerExistingAsync(context, existing, requestHash);
            return;
        }

        var original = context.Response.Body;
        await using var captured = new MemoryStream();
        context.Response.Body = captured;
        try
        {
            await next(context);
        }
        catch (Exception e) when (e is not NpgsqlException)
        {
            await ReleaseAsync(dataSource, caller.TenantId, key);
            throw;
        }
        finally
        {
            context.Response.Body = original;
        }

        if (context.Response.StatusCode >= 500) await ReleaseAsync(dataSource, caller.TenantId, key);
        else await CompleteAsync(dataSource, caller.TenantId, key, context.Response, captured.ToArray());
        captured.Position = 0;
        await captured.CopyToAsync(original, context.RequestAborted);
    }

    private static async Task<byte[]> HashAsync(HttpRequest request, CancellationToken ct)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(Encoding.UTF8.GetBytes($"{request.Method} {request.Path}{request.QueryString}\n"));
        var buffer = new byte[16 * 1024];
        int read;
        while ((read = await request.Body.ReadAsync(buffer, ct)) > 0) hash.AppendData(buffer, 0, read);
        return hash.GetHashAndReset();
    }

    /// <summary>Claims the key for this request (null), or returns what an earlier request with it left.</summary>
    private static async Task<Stored?> ClaimAsync(NpgsqlDataSource dataSource, string tenantId, string key, byte[] requestHash, CancellationToken ct)
    {
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        await using var batch = TenantSession.Batch(connection, tenantId);
        batch.BatchCommands.Add(PositionalCommand.Of(
            "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $2 AND created_at < now() - $3::interval", tenantId, key, Lifetime));
        var claim = PositionalCommand.Of(
            "INSERT INTO idempotency_keys (tenant_id, key, request_hash) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING", tenantId, key, requestHash);
        batch.BatchCommands.Add(claim);
        await batch.ExecuteNonQueryAsync(ct);
        if (claim.RecordsAffected == 1) return null;

        await using var read = TenantSession.Batch(connection, tenantId);
        read.BatchCommands.Add(PositionalCommand.Of(
            "SELECT request_hash, completed_at, status, content_type, location, body FROM idempotency_keys WHERE tenant_id = $1 AND key = $2",
            tenantId, key));
        await using var reader = await read.ExecuteReaderAsync(ct);
        await reader.NextResultAsync(ct); // the tenant pin's result
        if (!await reader.ReadAsync(ct)) return new Stored { RequestHash = requestHash }; // released meanwhile: in progress again
        return new Stored
        {
            RequestHash = (byte[])reader[0],
            CompletedAt = reader.IsDBNull(1) ? null : reader.GetDateTime(1),
            Status = reader.IsDBNull(2) ? null : reader.GetInt32(2),
            ContentType = reader.IsDBNull(3) ? null : reader.GetString(3),
            Location = reader.IsDBNull(4) ? null : reader.GetString(4),
            Body = reader.IsDBNull(5) ? null : (byte[])reader[5],
        };
    }

    private static async Task AnswerExistingAsync(HttpContext context, Stored stored, byte[] requestHash)
    {
        if (!CryptographicOperations.FixedTimeEquals(stored.RequestHash, requestHash))
        {
            await Problems.WriteAsync(context, new Error("idempotency_key_reused", 409, "Idempotency key reused.",
                "This Idempotency-Key was used for a different request in the last 24 hours; use a new key for a new request."));
            return;
        }
        if (stored.CompletedAt is null || stored.Status is null)
        {
            await Problems.WriteAsync(context, new Error("idempotency_key_in_progress", 409, "Request in progress.",
                "A request with this Idempotency-Key is still running; retry once it has answered.",
                Extensions: new Dictionary<string, object?> { ["retry_after_seconds"] = 1 }));
            return;
        }
        context.Response.StatusCode = stored.Status.Value;
        context.Response.Headers[ReplayedHeader] = "true";
        if (stored.ContentType is not null) context.Response.ContentType = stored.ContentType;
        if (stored.Location is not null) context.Response.Headers.Location = stored.Location;
        if (stored.Body is { Length: > 0 } body) await context.Response.Body.WriteAsync(body, context.RequestAborted);
    }

    private static async Task CompleteAsync(NpgsqlDataSource dataSource, string tenantId, string key, HttpResponse response, byte[] body)
    {
        await using var connection = await dataSource.OpenConnectionAsync(CancellationToken.None);
        await using var batch = TenantSession.Batch(connection, tenantId);
        var location = response.Headers.Location.ToString();
        batch.BatchCommands.Add(PositionalCommand.Of("""
            UPDATE idempotency_keys SET completed_at = now(), status = $3, content_type = $4, location = $5, body = $6
            WHERE tenant_id = $1 AND key = $2
            """, tenantId, key, response.StatusCode, PositionalCommand.Text(response.ContentType),
            PositionalCommand.Text(location.Length > 0 ? location : null), body));
        await batch.ExecuteNonQueryAsync(CancellationToken.None);
    }

    private static async Task ReleaseAsync(NpgsqlDataSource dataSource, string tenantId, string key)
    {
        await using var connection = await dataSource.OpenConnectionAsync(CancellationToken.None);
        await using var batch = TenantSession.Batch(connection, tenantId);
        batch.BatchCommands.Add(PositionalCommand.Of(
            "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $2 AND completed_at IS NULL", tenantId, key));
        await batch.ExecuteNonQueryAsync(CancellationToken.None);
    }
}
