using System.Globalization;
using System.Text;
using System.Text.Json;
using Amazon.Runtime;
using Amazon.S3;
using Amazon.S3.Model;
using Integrations.Common;
using Integrations.Infrastructure.Network;
using Integrations.Infrastructure.Vault;

namespace Integrations.Features.Connectors.Adapters;

/// <summary>
/// The S3 connector (AWSSDK.S3): list, get and put in the one bucket a connection names, path-style under its service
/// URL, signed with the connection's access key. Every request leaves through the <see cref="SsrfGuard"/>'s handler
/// (the SDK is given that HttpClient, so each connection re-resolves and re-checks its host; no redirects). A key is
/// one value: a <c>.</c> or <c>..</c> segment, which URL normalization would turn into another bucket's path, is
/// refused. Reads and writes are capped at <c>max_object_bytes</c>: an object over it is refused, never truncated.
/// </summary>
public sealed class S3Adapter(SsrfGuard guard) : IConnectorAdapter, IDisposable
{
    public const int DefaultMaxObjectBytes = 1 << 20;

    private static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(30);

    private readonly HttpClient _http = new(guard.CreateHandler()) { Timeout = Timeout.InfiniteTimeSpan };

    public string Name => "s3";

    public void Dispose() => _http.Dispose();

    public static Error ObjectTooLarge(string key, long size, int cap) =>
        new("object_too_large", 422, "Object too large.", $"The object '{key}' is {size.ToString(CultureInfo.InvariantCulture)} bytes; this connection reads and writes at most {cap.ToString(CultureInfo.InvariantCulture)} (max_object_bytes).")
        {
            Extensions = new Dictionary<string, object?> { ["size"] = size, ["max_object_bytes"] = cap },
        };

    private sealed record Settings(Uri ServiceUrl, string Region, string Bucket, int MaxObjectBytes, TimeSpan Timeout);

    public async Task<Error?> CheckConfigurationAsync(ConnectionEndpoint connection, CancellationToken ct)
    {
        var settings = Read(connection);
        if (!settings.IsSuccess) return settings.Error;
        var checkedUrl = await guard.CheckAsync(settings.Value.ServiceUrl, ct);
        return checkedUrl.IsSuccess ? null : checkedUrl.Error;
    }

    public async Task<ConnectionProbe> TestAsync(ConnectionEndpoint connection, ResolvedCredential? credential, CancellationToken ct)
    {
        var listed = await CallAsync(connection, credential, async (s3, settings, token) =>
            (Result<ListObjectsV2Response>)await s3.ListObjectsV2Async(new ListObjectsV2Request { BucketName = settings.Bucket, MaxKeys = 1 }, token), ct);
        return listed.IsSuccess
            ? new ConnectionProbe(true, $"The service listed the bucket '{Read(connection).Value.Bucket}' with the access key.", 200)
            : new ConnectionProbe(false, $"{listed.Error!.Code}: {listed.Error.Detail}", listed.Error.Extensions?.GetValueOrDefault(Error.UpstreamStatus) as int?);
    }

    public Error? CheckArguments(ConnectionEndpoint connection, ConnectorAction action, JsonElement arguments)
    {
        if (action.Name != "list_objects" && KeyProblem(Text(arguments, "key")) is { } problem) return Error.Validation("arguments.key", problem);
        return Text(arguments, "encoding") == "base64" && !IsBase64(Text(arguments, "body") ?? string.Empty)
            ? Error.Validation("arguments.body", "With encoding base64, body must be base64.")
            : null;
    }

    public async Task<Result<ActionOutput>> InvokeAsync(ActionCall call, CancellationToken ct)
    {
        var arguments = call.Arguments;
        if (CheckArguments(call.Connection, call.Action, arguments) is { } invalid) return invalid;
        return call.Action.Name switch
        {
            "list_objects" => await ListAsync(call, ct),
            "get_object" => await GetAsync(call, Text(arguments, "key")!, ct),
            "put_object" => await PutAsync(call, Text(arguments, "key")!, ct),
            _ => Error.NotFound("action"),
        };
    }

    private Task<Result<ActionOutput>> ListAsync(ActionCall call, CancellationToken ct) =>
        CallAsync(call.Connection, call.Credential, async Task<Result<ActionOutput>> (AmazonS3Client s3, Settings settings, CancellationToken token) =>
        {
            var request = new ListObjectsV2Request
            {
                BucketName = settings.Bucket,
                Prefix = Text(call.Arguments, "prefix"),
                MaxKeys = call.Arguments.TryGetProperty("limit", out var limit) ? limit.GetInt32() : 100,
                ContinuationToken = Text(call.Arguments, "cursor"),
            };
            var listed = await s3.ListObjectsV2Async(request, token);
            var objects = (listed.S3Objects ?? []).Select(o => new
            {
                key = o.Key,
                size = o.Size ?? 0,
                last_modified = o.LastModified?.ToUniversalTime(),
                etag = o.ETag,
            }).ToList();
            var truncated = listed.IsTruncated == true;
            var output = JsonSerializer.SerializeToElement(new { objects, truncated, next_cursor = truncated ? listed.NextContinuationToken : null });
            return new ActionOutput(output, new Dictionary<string, object?> { ["objects"] = objects.Count });
        }, ct);

    private Task<Result<ActionOutput>> GetAsync(ActionCall call, string key, CancellationToken ct) =>
        CallAsync(call.Connection, call.Credential, async Task<Result<ActionOutput>> (AmazonS3Client s3, Settings settings, CancellationToken token) =>
        {
            using var response = await s3.GetObjectAsync(new GetObjectRequest { BucketName = settings.Bucket, Key = key }, token);
            if (response.ContentLength > settings.MaxObjectBytes) return ObjectTooLarge(key, response.ContentLength, settings.MaxObjectBytes);
            // The length header is the service's word; what is read is capped again.
            using var buffer = new MemoryStream();
            var chunk = new byte[16 * 1024];
            int read;
            while ((read = await response.ResponseStream.ReadAsync(chunk, token)) > 0)
            {
                if (buffer.Length + read > settings.MaxObjectBytes) return ObjectTooLarge(key, buffer.Length + read, settings.MaxObjectBytes);
                buffer.Write(chunk, 0, read);
            }
            var bytes = buffer.ToArray();
            var text = StrictUtf8(bytes);
            var output = JsonSerializer.SerializeToElement(new
            {
                key,
                size = bytes.Length,
                content_type = response.Headers.ContentType,
                etag = response.ETag,
                encoding = text is null ? "base64" : "utf8",
                body = text ?? Convert.ToBase64String(bytes),
            });
            return new ActionOutput(output, new Dictionary<string, object?> { ["object_bytes"] = bytes.Length });
        }, ct);

    private Task<Result<ActionOutput>> PutAsync(ActionCall call, string key, CancellationToken ct)
    {
        var body = Text(call.Arguments, "body") ?? string.Empty;
        var bytes = Text(call.Arguments, "encoding") == "base64" ? Convert.FromBase64String(body) : Encoding.UTF8.GetBytes(body);

        return CallAsync(call.Connection, call.Credential, async Task<Result<ActionOutput>> (AmazonS3Client s3, Settings settings, CancellationToken token) =>
        {
            if (bytes.Length > settings.MaxObjectBytes) return ObjectTooLarge(key, bytes.Length, settings.MaxObjectBytes);
            using var content = new MemoryStream(bytes, writable: false);
            var put = await s3.PutObjectAsync(new PutObjectRequest
            {
                BucketName = settings.Bucket,
                Key = key,
                InputStream = content,
                ContentType = Text(call.Arguments, "content_type") ?? "application/octet-stream",
                UseChunkEncoding = false,
                AutoCloseStream = false,
            }, token);
            var output = JsonSerializer.SerializeToElement(new { key, size = bytes.Length, etag = put.ETag });
            return new ActionOutput(output, new Dictionary<string, object?> { ["object_bytes"] = bytes.Length });
        }, ct);
    }

    /// <summary>One SDK call with the connection's settings and access key, its failures in the caller's words.</summary>
    private async Task<Result<T>> CallAsync<T>(
        ConnectionEndpoint connection, ResolvedCredential? credential, Func<AmazonS3Client, Settings, CancellationToken, Task<Result<T>>> work, CancellationToken ct)
    {
        var read = Read(connection);
        if (!read.IsSuccess) return read.Error!;
        var settings = read.Value;
        if (AccessKey(credential) is not { } key)
        {
            return CredentialErrors.Denied("S3 takes an access key: basic_auth (username = access key id, password = secret) or custom with access_key_id and secret_access_key.");
        }
        var config = new AmazonS3Config
        {
            ServiceURL = settings.ServiceUrl.AbsoluteUri,
            AuthenticationRegion = settings.Region,
            ForcePathStyle = true,
            HttpClientFactory = new GuardedHttpClients(_http),
            MaxErrorRetry = 1,
            Timeout = settings.Timeout,
            // S3-compatible services do not all know the SDK's newer default of checksums on every request.
            RequestChecksumCalculation = RequestChecksumCalculation.WHEN_REQUIRED,
            ResponseChecksumValidation = ResponseChecksumValidation.WHEN_REQUIRED,
        };
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(settings.Timeout);
        try
        {
            using var s3 = new AmazonS3Client(new BasicAWSCredentials(key.Id, key.Secret), config);
            return await work(s3, settings, deadline.Token);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            return Error.UpstreamTimeout($"The S3 service did not answer within {settings.Timeout.TotalMilliseconds.ToString(CultureInfo.InvariantCulture)} ms.");
        }
        catch (AmazonS3Exception e) when (e.StatusCode != 0)
        {
            return Error.UpstreamError($"The S3 service answered {(int)e.StatusCode} {e.ErrorCode}: {e.Message}") with
            {
                Extensions = new Dictionary<string, object?> { ["s3_error"] = e.ErrorCode, [Error.UpstreamStatus] = (int)e.StatusCode },
            };
        }
        catch (Exception e) when (SsrfGuard.IsBlocked(e))
        {
            return Error.SsrfBlocked(Blocked(e));
        }
        catch (Exception e) when (e is HttpRequestException or AmazonServiceException or AmazonClientException or IOException)
        {
            return Error.UpstreamUnreachable($"The S3 service at {settings.ServiceUrl.Authority} could not be reached ({Reason(e)}).");
        }
    }

    private static string Blocked(Exception e)
    {
        for (var inner = e; inner is not null; inner = inner.InnerException)
        {
            if (inner is SsrfBlockedException) return inner.Message;
        }
        return "The address is not allowed.";
    }

    private static string Reason(Exception e)
    {
        for (var inner = e; inner is not null; inner = inner.InnerException)
        {
            if (inner is HttpRequestException http) return http.HttpRequestError.ToString();
        }
        return e.GetType().Name;
    }

    private sealed record Key(string Id, string Secret);

    private static Key? AccessKey(ResolvedCredential? credential) => credential?.Type switch
    {
        CredentialTypes.BasicAuth when credential.Username is { Length: > 0 } id && credential.Password is { Length: > 0 } secret => new Key(id, secret),
        CredentialTypes.Custom when credential.Fields.GetValueOrDefault("access_key_id") is { Length: > 0 } id
            && credential.Fields.GetValueOrDefault("secret_access_key") is { Length: > 0 } secret => new Key(id, secret),
        _ => null,
    };

    /// <summary>Why a key cannot be sent as one path value, or null.</summary>
    private static string? KeyProblem(string? key)
    {
        if (string.IsNullOrEmpty(key)) return "A key is 1-1024 characters.";
        if (Encoding.UTF8.GetByteCount(key) > 1024) return "A key is at most 1024 bytes of UTF-8.";
        if (key.Any(char.IsControl)) return "A key cannot contain control characters.";
        if (key.Split('/').Any(segment => segment is "." or "..")) return "A key cannot have '.' or '..' segments (they would name a path outside the bucket).";
        return null;
    }

    private static Result<Settings> Read(ConnectionEndpoint connection)
    {
        if (!Uri.TryCreate(connection.Setting("service_url"), UriKind.Absolute, out var url)
            || (url.Scheme != Uri.UriSchemeHttp && url.Scheme != Uri.UriSchemeHttps) || url.UserInfo.Length > 0 || url.Query.Length > 0 || url.Fragment.Length > 0)
        {
            return Error.Validation("configuration.service_url", "An absolute http(s) URL without user info, query or fragment.");
        }
        if (connection.Setting("bucket") is not { Length: > 0 } bucket) return Error.Validation("configuration.bucket", "A bucket name.");
        var max = connection.Number("max_object_bytes") ?? DefaultMaxObjectBytes;
        var timeout = connection.Number("timeout_ms") is { } ms ? TimeSpan.FromMilliseconds(ms) : DefaultTimeout;
        return new Settings(url, connection.Setting("region") ?? "us-east-1", bucket, max, timeout);
    }

    private static bool IsBase64(string text) => Convert.TryFromBase64String(text, new byte[text.Length * 3 / 4 + 3], out _);

    private static string? StrictUtf8(byte[] bytes)
    {
        try
        {
            return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            return null;
        }
    }

    private static string? Text(JsonElement arguments, string name) =>
        arguments.ValueKind == JsonValueKind.Object && arguments.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    /// <summary>Hands the SDK the guard's HttpClient, shared and never disposed by the SDK.</summary>
    private sealed class GuardedHttpClients(HttpClient client) : HttpClientFactory
    {
        public override HttpClient CreateHttpClient(IClientConfig clientConfig) => client;

        public override bool DisposeHttpClientsAfterUse(IClientConfig clientConfig) => false;

        public override bool UseSDKHttpClientCaching(IClientConfig clientConfig) => false;
    }
}
