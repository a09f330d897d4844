using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Integrations.Tests.Support;

/// <summary>
/// A local AWS KMS speaking the subset of its JSON API the vault uses (no AWS emulator is reachable here), shaped as
/// the KMS API reference gives it: <c>POST /</c> with <c>X-Amz-Target: TrentService.GenerateDataKey | Decrypt | Encrypt</c>
/// and <c>Content-Type: application/x-amz-json-1.1</c>; blobs and plaintexts base64 in JSON; errors as
/// <c>{"__type": "InvalidCiphertextException", "message": ...}</c> with status 400. Every request must carry a valid
/// Signature Version 4 <c>Authorization</c> header for <see cref="AccessKeyId"/>/<see cref="SecretAccessKey"/> (checked
/// as AWS does, 400 <c>InvalidSignatureException</c> otherwise). Its ciphertext blobs are AES-256-GCM under the named
/// key with the encryption context as associated data, so a changed blob or context does not decrypt, as in KMS.
/// </summary>
public sealed class FakeAwsKms : IAsyncDisposable
{
    public const string AccessKeyId = "AKIAINTEGRATIONSTEST";
    public const string SecretAccessKey = "kms-test-secret/4c1f9a7e";
    public const string Region = "eu-west-1";

    public sealed record Request(string Target, string ContentType, string Authorization, bool SignatureValid, JsonObject Body);

    private WebApplication _app = null!;
    private readonly ConcurrentDictionary<string, byte[]> _keys = new(StringComparer.Ordinal);

    public string Address { get; private set; } = "";

    public ConcurrentQueue<Request> Requests { get; } = new();

    public static string KeyArn(string name) => $"arn:aws:kms:{Region}:111122223333:key/{name}";

    /// <summary>Creates a symmetric key and answers its ARN.</summary>
    public string CreateKey(string name)
    {
        var arn = KeyArn(name);
        _keys[arn] = RandomNumberGenerator.GetBytes(32);
        return arn;
    }

    public IReadOnlyList<Request> Calls(string operation) => Requests.Where(r => r.Target == $"TrentService.{operation}").ToList();

    /// <summary>The settings that point the service's KMS provider at this server, wrapping new data keys under <paramref name="keyArn"/>.</summary>
    public Dictionary<string, string?> Settings(string keyArn, string cacheTtl = "00:05:00") => new()
    {
        ["Integrations:Vault:Provider"] = "aws-kms",
        ["Integrations:Vault:Kms:KeyId"] = keyArn,
        ["Integrations:Vault:Kms:Region"] = Region,
        ["Integrations:Vault:Kms:ServiceUrl"] = Address,
        ["Integrations:Vault:Kms:AccessKeyId"] = AccessKeyId,
        ["Integrations:Vault:Kms:SecretAccessKey"] = SecretAccessKey,
        ["Integrations:Vault:Kms:DataKeyCacheTtl"] = cacheTtl,
    };

    public static async Task<FakeAwsKms> StartAsync()
    {
        var kms = new FakeAwsKms();
        (kms._app, kms.Address) = await LoopbackServer.StartAsync(app => app.MapPost("/", (Delegate)kms.HandleAsync));
        return kms;
    }

    private async Task<IResult> HandleAsync(HttpContext context)
    {
        using var buffer = new MemoryStream();
        await context.Request.Body.CopyToAsync(buffer);
        var body = buffer.ToArray();
        var target = context.Request.Headers["X-Amz-Target"].ToString();
        var authorization = context.Request.Headers.Authorization.ToString();
        var signed = SignatureValid(context.Request, body);
        var json = JsonNode.Parse(body)!.AsObject();
        Requests.Enqueue(new Request(target, context.Request.ContentType ?? "", authorization, signed, json));

        if (!signed) return Fault("InvalidSignatureException", "The request signature we calculated does not match the signature you provided.");
        return target switch
        {
            "TrentService.GenerateDataKey" => GenerateDataKey(json),
            "TrentService.Encrypt" => Encrypt(json),
            "TrentService.Decrypt" => Decrypt(json),
            _ => Fault("UnknownOperationException", $"Unknown operation {target}."),
        };
    }

    private IResult GenerateDataKey(JsonObject body)
    {
        var keyId = body["KeyId"]?.GetValue<string>() ?? "";
        if (body["KeySpec"]?.GetValue<string>() != "AES_256") return Fault("ValidationException", "KeySpec must be AES_256 here.");
        if (!_keys.TryGetValue(keyId, out var key)) return Fault("NotFoundException", $"Key '{keyId}' does not exist");
        var plaintext = RandomNumberGenerator.GetBytes(32);
        return Answer(new { CiphertextBlob = Convert.ToBase64String(Seal(keyId, key, plaintext, body)), Plaintext = Convert.ToBase64String(plaintext), KeyId = keyId });
    }

    private IResult Encrypt(JsonObject body)
    {
        var keyId = body["KeyId"]?.GetValue<string>() ?? "";
        if (!_keys.TryGetValue(keyId, out var key)) return Fault("NotFoundException", $"Key '{keyId}' does not exist");
        var plaintext = Convert.FromBase64String(body["Plaintext"]!.GetValue<string>());
        return Answer(new { CiphertextBlob = Convert.ToBase64String(Seal(keyId, key, plaintext, body)), KeyId = keyId, EncryptionAlgorithm = "SYMMETRIC_DEFAULT" });
    }

    private IResult Decrypt(JsonObject body)
    {
        var blob = Convert.FromBase64String(body["CiphertextBlob"]!.GetValue<string>());
        if (blob.Length < 1 + 12 + 16 || blob.Length < 1 + blob[0] + 12 + 16) return Fault("InvalidCiphertextException", "");
        var keyId = Encoding.UTF8.GetString(blob, 1, blob[0]);
        if (body["KeyId"]?.GetValue<string>() is { } named && named != keyId)
        {
            return Fault("IncorrectKeyException", "The key ID in the request does not identify a KMS key that can perform this operation.");
        }
        if (!_keys.TryGetValue(keyId, out var key)) return Fault("InvalidCiphertextException", "");
        var at = 1 + blob[0];
        var plaintext = new byte[blob.Length - at - 12 - 16];
        try
        {
            using var aes = new AesGcm(key, 16);
            aes.Decrypt(blob.AsSpan(at, 12), blob.AsSpan(at + 28), blob.AsSpan(at + 12, 16), plaintext, Context(body));
        }
        catch (AuthenticationTagMismatchException)
        {
            return Fault("InvalidCiphertextException", "");
        }
        return Answer(new { KeyId = keyId, Plaintext = Convert.ToBase64String(plaintext), EncryptionAlgorithm = "SYMMETRIC_DEFAULT" });
    }

    private static byte[] Seal(string keyId, byte[] key, byte[] plaintext, JsonObject body)
    {
        var id = Encoding.UTF8.GetBytes(keyId);
        var blob = new byte[1 + id.Length + 12 + 16 + plaintext.Length];
        blob[0] = (byte)id.Length;
        id.CopyTo(blob, 1);
        var at = 1 + id.Length;
        RandomNumberGenerator.Fill(blob.AsSpan(at, 12));
        using var aes = new AesGcm(key, 16);
        aes.Encrypt(blob.AsSpan(at, 12), plaintext, blob.AsSpan(at + 28), blob.AsSpan(at + 12, 16), Context(body));
        return blob;
    }

    /// <summary>The encryption context in a canonical order, as the blob's associated data.</summary>
    private static byte[] Context(JsonObject body) => Encoding.UTF8.GetBytes(string.Join("\n",
        (body["EncryptionContext"]?.AsObject() ?? []).Select(p => $"{p.Key}={p.Value!.GetValue<string>()}").Order(StringComparer.Ordinal)));

    private static IResult Answer(object body) => Results.Text(JsonSerializer.Serialize(body), "application/x-amz-json-1.1");

    private static IResult Fault(string type, string message) =>
        Results.Text(JsonSerializer.Serialize(new Dictionary<string, string> { ["__type"] = type, ["message"] = message }), "application/x-amz-json-1.1", statusCode: 400);

    /// <summary>Recomputes the request's Signature Version 4 (AWS4-HMAC-SHA256) with the secret key and compares it.</summary>
    private static bool SignatureValid(HttpRequest request, byte[] body)
    {
        var header = request.Headers.Authorization.ToString();
        const string Scheme = "AWS4-HMAC-SHA256 ";
        if (!header.StartsWith(Scheme, StringComparison.Ordinal)) return false;
        var parts = header[Scheme.Length..].Split(',', StringSplitOptions.TrimEntries)
            .Select(p => p.Split('=', 2)).Where(p => p.Length == 2).ToDictionary(p => p[0], p => p[1]);
        if (!parts.TryGetValue("Credential", out var credential) || !parts.TryGetValue("SignedHeaders", out var signedHeaders)
            || !parts.TryGetValue("Signature", out var signature))
        {
            return false;
        }
        var scope = credential.Split('/');
        if (scope.Length != 5 || scope[0] != AccessKeyId || scope[2] != Region || scope[3] != "kms" || scope[4] != "aws4_request") return false;
        var amzDate = request.Headers["X-Amz-Date"].ToString();
        if (!amzDate.StartsWith(scope[1], StringComparison.Ordinal)) return false;

        var names = signedHeaders.Split(';');
        if (!names.Contains("host") || !names.Contains("x-amz-date") || !names.Contains("x-amz-target")) return false;
        var canonicalHeaders = string.Concat(names.Select(n => $"{n}:{string.Join(',', request.Headers[n].Select(v => v!.Trim()))}\n"));
        var canonical = string.Join("\n", request.Method, "/", request.QueryString.Value?.TrimStart('?') ?? "", canonicalHeaders, signedHeaders,
            Convert.ToHexStringLower(SHA256.HashData(body)));
        var toSign = string.Join("\n", "AWS4-HMAC-SHA256", amzDate, string.Join('/', scope[1..]), Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(canonical))));
        var key = Encoding.UTF8.GetBytes("AWS4" + SecretAccessKey);
        foreach (var step in new[] { scope[1], Region, "kms", "aws4_request" }) key = HMACSHA256.HashData(key, Encoding.UTF8.GetBytes(step));
        var expected = Convert.ToHexStringLower(HMACSHA256.HashData(key, Encoding.UTF8.GetBytes(toSign)));
        return CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(expected), Encoding.ASCII.GetBytes(signature));
    }

    public async ValueTask DisposeAsync() => await _app.DisposeAsync();
}
