using System.Diagnostics;
using Dapper;
using Npgsql;
using NpgsqlTypes;

namespace Integrations.Benchmarks.Query;

/// <summary>
/// Loads <c>cus_integrations</c> with binary COPY. Rows arrive in time order with tenants interleaved, as real
/// traffic would write them, so one tenant's rows are scattered over the heap. The data is skewed: one big tenant
/// holds <see cref="BigTenantRows"/> rows (enough for a page 1,000 pages deep), the rest share the remaining rows
/// evenly at random. 1% of rows are soft-deleted, which the partial page index leaves out.
/// </summary>
public sealed class IntegrationSeeder(int totalRows, int tenants, int bigTenantRows)
{
    public const string BigTenant = "bench-big";

    private static readonly string[] Providers = ["openai", "anthropic", "azure_openai", "google", "openai_compatible"];
    private static readonly string[] Statuses = ["created", "enabled", "disabled", "error"];
    private static readonly string[] Healths = ["unknown", "healthy", "degraded", "failing"];

    public int BigTenantRows => bigTenantRows;

    public static string SmallTenant(int index) => $"bench-{index:D5}";

    public sealed record Outcome(TimeSpan Copy, TimeSpan Indexes, TimeSpan Analyze, long TableBytes, long PageIndexBytes, int BigTenantLiveRows);

    public async Task<Outcome> SeedAsync(string connectionString)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await connection.ExecuteAsync("SET maintenance_work_mem = '256MB'");

        // Secondary indexes are built after the load (much faster than maintaining them row by row), from the
        // definitions the migrations created, so the measured indexes are exactly the service's.
        var indexes = (await connection.QueryAsync<(string Name, string Definition)>("""
            SELECT i.indexname, i.indexdef FROM pg_indexes i
            WHERE i.tablename = 'cus_integrations' AND i.indexname <> 'cus_integrations_pkey'
            """)).AsList();
        foreach (var index in indexes) await connection.ExecuteAsync($"DROP INDEX {index.Name}");

        var random = new Random(20_240_601);
        var end = DateTimeOffset.UtcNow.AddMinutes(-5);
        var start = end.AddDays(-365);
        var step = (end - start).TotalMilliseconds / totalRows;
        var smallTenants = Math.Max(1, tenants - 1);
        var bigLive = 0;

        var copy = Stopwatch.StartNew();
        // Synchronous writes: ten million awaited column writes would cost more than the load itself.
        using (var writer = connection.BeginBinaryImport("""
            COPY cus_integrations (id, tenant_id, name, provider, status, health, allowed_models, created_at, updated_at, deleted_at)
            FROM STDIN (FORMAT BINARY)
            """))
        {
            var bigLeft = bigTenantRows;
            for (var i = 0; i < totalRows; i++)
            {
                // Selection sampling: exactly bigTenantRows rows go to the big tenant, uniformly over time
                // (no run of them at either end of the table).
                var rowsLeft = totalRows - i;
                var big = random.NextDouble() * rowsLeft < bigLeft;
                if (big) bigLeft--;
                var tenant = big ? BigTenant : SmallTenant(random.Next(smallTenants));
                var created = start.AddMilliseconds(i * step);
                var deleted = random.Next(100) == 0;
                if (big && !deleted) bigLive++;

                writer.StartRow();
                writer.Write(Guid.CreateVersion7(created), NpgsqlDbType.Uuid);
                writer.Write(tenant, NpgsqlDbType.Text);
                writer.Write($"integration-{i}", NpgsqlDbType.Text);
                writer.Write(Providers[random.Next(Providers.Length)], NpgsqlDbType.Text);
                writer.Write(Statuses[random.Next(Statuses.Length)], NpgsqlDbType.Text);
                writer.Write(Healths[random.Next(Healths.Length)], NpgsqlDbType.Text);
                writer.Write(random.Next(2) == 0 ? Array.Empty<string>() : ["gpt-4o", "gpt-4o-mini"], NpgsqlDbType.Array | NpgsqlDbType.Text);
                writer.Write(created.UtcDateTime, NpgsqlDbType.TimestampTz);
                writer.Write(created.UtcDateTime, NpgsqlDbType.TimestampTz);
                if (deleted) writer.Write(created.AddDays(1).UtcDateTime, NpgsqlDbType.TimestampTz);
                else writer.WriteNull();
            }
            writer.Complete();
        }
        copy.Stop();

        var build = Stopwatch.StartNew();
        foreach (var index in indexes) await connection.ExecuteAsync(new CommandDefinition(index.Definition, commandTimeout: 600));
        build.Stop();

        var analyze = Stopwatch.StartNew();
        await connection.ExecuteAsync(new CommandDefinition("VACUUM (ANALYZE) cus_integrations", commandTimeout: 600));
        analyze.Stop();

        var tableBytes = await connection.ExecuteScalarAsync<long>("SELECT pg_table_size('cus_integrations')");
        var indexBytes = await connection.ExecuteScalarAsync<long>("SELECT pg_relation_size('cus_integrations_page')");
        return new Outcome(copy.Elapsed, build.Elapsed, analyze.Elapsed, tableBytes, indexBytes, bigLive);
    }
}
