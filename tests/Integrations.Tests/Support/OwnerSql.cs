using Dapper;
using Npgsql;

namespace Integrations.Tests.Support;

/// <summary>Direct SQL for assertions, as the owner role (row-level security does not apply to it).</summary>
public static class OwnerSql
{
    public static async Task<T> ScalarAsync<T>(string connectionString, string sql, object? args = null)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        return await connection.ExecuteScalarAsync<T>(sql, args) ?? throw new InvalidOperationException("No value.");
    }

    public static async Task<List<T>> QueryAsync<T>(string connectionString, string sql, object? args = null)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        return (await connection.QueryAsync<T>(sql, args)).AsList();
    }

    public static async Task<int> ExecuteAsync(string connectionString, string sql, object? args = null)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        return await connection.ExecuteAsync(sql, args);
    }

    public static Task<long> AuditCountAsync(string connectionString, string tenantId, string? action = null) =>
        ScalarAsync<long>(connectionString,
            "SELECT count(*) FROM audit_events WHERE tenant_id = @tenantId AND (@action::text IS NULL OR action = @action)",
            new { tenantId, action });
}
