using Integrations.Benchmarks.Support;

namespace Integrations.Benchmarks.Audit;

/// <summary>
/// The physical limit an audited write is measured against (issue 20): <c>pgbench</c> running the bare transaction of
/// <c>integrations.create</c> — the tenant pin, the row insert, and <c>audit_append</c> (the chain-head lock, the hash
/// chain and the audit insert in one statement) with a constant MAC — with the same number of clients over the same
/// number of tenants, prepared statements, against the same cluster in the same run. Nothing of the service runs:
/// no mediator, no validation, no HMAC, no HTTP.
/// </summary>
public sealed class BareTransactionLimit(BenchSettings settings)
{
    public sealed record Result(double TransactionsPerSecond, int Clients, int Tenants, int Seconds, long Failed, string Script);

    public const string TenantPrefix = "audit-l";

    public static string Script(int tenants) => $$"""
        \set t random(0, {{tenants - 1}})
        \set n random(1, 9000000000000000000)
        BEGIN;
        SELECT set_config('role', 'integrations_app', true), set_config('app.tenant_id', '{{TenantPrefix}}-' || lpad(:t::int::text, 3, '0'), true);
        INSERT INTO cus_integrations (id, tenant_id, name, provider, base_url, credential_ref, requests_per_minute, tokens_per_month, budget_cents_per_month, allowed_models)
            VALUES (md5(:client_id::text || '-' || :n::text)::uuid, '{{TenantPrefix}}-' || lpad(:t::int::text, 3, '0'), 'w-' || :client_id::text || '-' || :n::text, 'openai', NULL, NULL, NULL, NULL, NULL, '{}')
            ON CONFLICT DO NOTHING
            RETURNING id;
        SELECT audit_append('{{TenantPrefix}}-' || lpad(:t::int::text, 3, '0'), ARRAY['bench-limit'], ARRAY[md5(:client_id::text || '-' || :n::text)::uuid::text],
            ARRAY['integrations.create'], ARRAY['integration'], ARRAY[md5(:client_id::text || '-' || :n::text)::uuid::text],
            ARRAY[jsonb_build_object('name', 'w-' || :client_id::text || '-' || :n::text, 'provider', 'openai', 'base_url', NULL, 'credential_ref', 'none')],
            ARRAY[gen_random_uuid()], ARRAY[now()], ARRAY['k0000001'], ARRAY['\x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f'::bytea]);
        COMMIT;
        """;

    public async Task<Result> RunAsync(string connectionString, string outputDirectory, int seconds)
    {
        var clients = settings.AuditCallers;
        var tenants = settings.AuditTenants;
        Console.WriteLine($"[audit] limit: pgbench, {clients} clients over {tenants} tenants, {seconds} s...");
        var run = await PgBench.RunAsync(connectionString, outputDirectory, "audited-write", Script(tenants), clients, seconds);
        var result = new Result(run.TransactionsPerSecond, clients, tenants, seconds, run.Failed, run.Script);
        Console.WriteLine($"[audit] limit: {result.TransactionsPerSecond:N0} transactions/s");
        return result;
    }
}
