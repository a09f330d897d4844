using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Dapper;
using Integrations.Infrastructure.Database;
using Npgsql;
using NpgsqlTypes;

namespace Integrations.Pipeline.Governance;

/// <summary>
/// The evidence of one governed call: its output as the target's <see cref="EvidencePolicy"/> keeps it — redacted
/// (<see cref="EvidenceRedactor"/>), cut at the policy's size — written with the call's outcome, in the same transaction
/// (or journal entry). <c>output_hash</c> is the call's own (of the whole output, before redaction), so the evidence names
/// the invocation's record; <c>content_hash</c> is of what is stored. Rows are never changed; <c>ExpiredRowsPruning</c>
/// drops them after the policy's retention.
/// </summary>
public static class CallEvidence
{
    private const string InsertSql = """
        INSERT INTO call_evidence (tenant_id, call_id, subject_type, subject_id, output_hash, content, content_hash,
            original_bytes, redactions, truncated, expires_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
        """;

    /// <summary>The columns a read takes, in the order of <see cref="Response"/>.</summary>
    public const string Columns = """
        call_id, subject_type, subject_id, output_hash, content, content_hash, original_bytes, redactions, truncated, created_at, expires_at
        """;

    /// <summary>
    /// <c>content</c> is the kept output as JSON text (cut at the policy's <c>max_bytes</c> when <c>truncated</c>, then not
    /// valid JSON); <c>redactions</c> counts the values taken out.
    /// </summary>
    public sealed record Response(
        Guid CallId, string SubjectType, string SubjectId, string OutputHash, string Content, string ContentHash,
        int OriginalBytes, int Redactions, bool Truncated, DateTimeOffset CreatedAt, DateTimeOffset ExpiresAt);

    /// <summary>The evidence <paramref name="callId"/> kept, or null when it kept none (or it has expired).</summary>
    public static Task<Response?> FindAsync(NpgsqlConnection connection, string tenantId, Guid callId, CancellationToken ct) =>
        connection.QuerySingleOrDefaultAsync<Response?>(new CommandDefinition(
            $"SELECT {Columns} FROM call_evidence WHERE tenant_id = @TenantId AND call_id = @CallId",
            new { TenantId = tenantId, CallId = callId }, cancellationToken: ct));

    /// <summary>Adds the evidence of <paramref name="call"/> to <paramref name="batch"/> when its target keeps any and its handler reported the output.</summary>
    internal static void AddTo(NpgsqlBatch batch, GovernedCall call, CallOutput output)
    {
        if (call.Target?.Evidence is not { } policy || output.Output is not { } raw || output.OutputHash is not { } outputHash) return;

        byte[] bytes;
        int redactions;
        try
        {
            var node = JsonNode.Parse(raw.GetRawText())!;
            redactions = EvidenceRedactor.Redact(node, policy, call.CredentialSecrets ?? []);
            bytes = Encoding.UTF8.GetBytes(node.ToJsonString());
        }
        catch (Exception e) when (e is JsonException or ArgumentException or InvalidOperationException)
        {
            // An output that cannot be re-read as JSON text is not kept: the call's outcome and hash are written all the same.
            return;
        }
        var truncated = bytes.Length > policy.MaxBytes;
        var content = truncated ? Cut(bytes, policy.MaxBytes) : Encoding.UTF8.GetString(bytes);
        batch.BatchCommands.Add(PositionalCommand.Of(InsertSql, call.Caller.TenantId, call.Id, call.SubjectType, call.SubjectId, outputHash,
            content, Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(content))), bytes.Length, redactions, truncated,
            new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.TimestampTz, Value = call.StartedAt.AddDays(policy.RetentionDays) }));
    }

    /// <summary>The longest prefix of <paramref name="utf8"/> within <paramref name="maxBytes"/> that ends on a whole character.</summary>
    private static string Cut(byte[] utf8, int maxBytes)
    {
        var end = maxBytes;
        while (end > 0 && (utf8[end] & 0xC0) == 0x80) end--;
        return Encoding.UTF8.GetString(utf8, 0, end);
    }
}
