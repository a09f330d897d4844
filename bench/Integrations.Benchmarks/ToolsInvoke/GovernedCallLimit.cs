using System.Globalization;
using Dapper;
using Integrations.Benchmarks.Support;
using Npgsql;

namespace Integrations.Benchmarks.ToolsInvoke;

/// <summary>
/// The physical limit a governed tool call is measured against (issue 20): <c>pgbench</c> running the two
/// transactions the service commits for each <c>tools.invoke</c> — admission (the tenant pin, the check that the tool
/// and server rows are still the ones decided on, <c>audit_append</c> of <c>requested</c>, <c>allowed</c> and
/// <c>started</c>) and outcome (the tenant pin, the invocation row, <c>audit_append</c> of <c>completed</c>) — each sent
/// as one pipeline that commits as it ends, as the service's batches are. One pgbench transaction is one call. No MCP
/// call, no HTTP, no key check, no HMAC: what PostgreSQL allows for the call's bookkeeping on the same cluster in the
/// same run. Run over as many tenants as callers (no chain shared) and over one tenant (every call queues on the
/// same chain head, one call per commit: what the service's batches of a tenant's writes are there to beat).
/// </summary>
public static class GovernedCallLimit
{
    public sealed record Result(int Tenants, PgBench.Result Run)
    {
        public double CallsPerSecond => Run.TransactionsPerSecond;
    }

    private const string Prefix = "invoke-l";

    /// <summary>Copies the registered tool and its server to <paramref name="tenants"/> tenants of their own, then runs the script.</summary>
    public static async Task<Result> RunAsync(string connectionString, string outputDirectory, Guid serverId, Guid toolId, int tenants, int clients, int seconds)
    {
        var prefix = $"{Prefix}{tenants}";
        var (serverXmin, toolXmin) = await CopyTargetAsync(connectionString, serverId, toolId, prefix, tenants);
        var run = await PgBench.RunAsync(connectionString, outputDirectory, $"governed-call-{tenants}-tenants", Script(prefix, tenants), clients, seconds,
            new Dictionary<string, string> { ["sxmin"] = serverXmin, ["txmin"] = toolXmin });
        return new Result(tenants, run);
    }

    /// <summary>
    /// One copy per tenant, all in one statement per table, so every copy carries the same <c>xmin</c> (the script checks
    /// the versions as the service's admission does).
    /// </summary>
    private static async Task<(string ServerXmin, string ToolXmin)> CopyTargetAsync(string connectionString, Guid serverId, Guid toolId, string prefix, int tenants)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        var parameters = new { Server = serverId, Tool = toolId, Prefix = prefix, Last = tenants - 1 };
        await connection.ExecuteAsync("""
            INSERT INTO mcp_servers
            SELECT (jsonb_populate_record(NULL::mcp_servers, to_jsonb(s) || jsonb_build_object(
                'id', md5(@Prefix || '-' || lpad(t::text, 3, '0') || '-server')::uuid, 'tenant_id', @Prefix || '-' || lpad(t::text, 3, '0')))).*
            FROM mcp_servers s, generate_series(0, @Last) t WHERE s.id = @Server
            """, parameters);
        await connection.ExecuteAsync("""
            INSERT INTO mcp_tools
            SELECT (jsonb_populate_record(NULL::mcp_tools, to_jsonb(x) || jsonb_build_object(
                'id', md5(@Prefix || '-' || lpad(t::text, 3, '0') || '-tool')::uuid,
                'server_id', md5(@Prefix || '-' || lpad(t::text, 3, '0') || '-server')::uuid,
                'tenant_id', @Prefix || '-' || lpad(t::text, 3, '0')))).*
            FROM mcp_tools x, generate_series(0, @Last) t WHERE x.id = @Tool
            """, parameters);
        var server = await connection.ExecuteScalarAsync<string>("SELECT xmin::text FROM mcp_servers WHERE tenant_id = @Prefix || '-000'", parameters);
        var tool = await connection.ExecuteScalarAsync<string>("SELECT xmin::text FROM mcp_tools WHERE tenant_id = @Prefix || '-000'", parameters);
        return (server!, tool!);
    }

    /// <summary>
    /// Ids ordered by time as the service's (UUID version 7) are, so the primary keys take inserts at their right edge.
    /// </summary>
    private const string OrderedId = "(lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0') || substr(md5(random()::text), 1, 20))::uuid";

    private const string Mac = @"'\x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f'::bytea";

    public static string Script(string prefix, int tenants)
    {
        var tenant = $"'{prefix}-' || lpad(:t::int::text, 3, '0')";
        var server = $"md5({tenant} || '-server')::uuid";
        var tool = $"md5({tenant} || '-tool')::uuid";
        var pin = $"SELECT set_config('role', 'integrations_app', true), set_config('app.tenant_id', {tenant}, true);";
        var call = "md5(:client_id::text || '-' || :n::text)::uuid::text";
        string Details(string extra) =>
            $"jsonb_build_object('server', 'bench-echo', 'server_id', {server}, 'tool', 'echo', 'tool_id', {tool}, 'run_id', NULL, " +
            $"'input_hash', 'sha256:4b9e3c0a1f7d2e6b8a5c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c'{extra})";
        string Array(int count, string item) => "ARRAY[" + string.Join(", ", Enumerable.Repeat(item, count)) + "]";
        return string.Create(CultureInfo.InvariantCulture, $$"""
            \set t random(0, {{tenants - 1}})
            \set n random(1, 9000000000000000000)
            \startpipeline
            {{pin}}
            SELECT assert_unchanged(EXISTS (
                SELECT FROM mcp_tools t JOIN mcp_servers s ON s.tenant_id = t.tenant_id AND s.id = t.server_id
                WHERE t.tenant_id = {{tenant}} AND t.id = {{tool}} AND t.server_id = {{server}} AND s.deleted_at IS NULL
                  AND t.xmin = :txmin::xid AND s.xmin = :sxmin::xid), 'the MCP tool');
            SELECT audit_append({{tenant}}, {{Array(3, "'bench-limit'")}}, {{Array(3, call)}},
                ARRAY['tool.invocation.requested', 'tool.invocation.allowed', 'tool.invocation.started'], {{Array(3, "'mcp_tool'")}}, {{Array(3, $"{tool}::text")}},
                ARRAY[{{Details("")}}, {{Details(", 'risk_level', 'low'")}}, {{Details("")}}],
                {{Array(3, OrderedId)}}, {{Array(3, "now()")}}, {{Array(3, "'k0000001'")}}, {{Array(3, Mac)}});
            \endpipeline
            \startpipeline
            {{pin}}
            INSERT INTO mcp_tool_invocations (id, tenant_id, server_id, tool_id, tool_name, run_id, caller, input_hash, output_hash,
                outcome, decision_reason, error, duration_ms, started_at, finished_at, incident_id)
            VALUES ({{OrderedId}}, {{tenant}}, {{server}}, {{tool}}, 'echo', NULL, 'bench-limit',
                'sha256:4b9e3c0a1f7d2e6b8a5c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c', 'sha256:0d1e2f3a4b5c6d7e8f901a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d',
                'completed', NULL, NULL, 0.5, now(), now(), NULL);
            SELECT audit_append({{tenant}}, ARRAY['bench-limit'], ARRAY[{{call}}], ARRAY['tool.invocation.completed'], ARRAY['mcp_tool'], ARRAY[{{tool}}::text],
                ARRAY[{{Details(", 'outcome', 'completed', 'duration_ms', 0.5, 'output_hash', 'sha256:0d1e2f3a4b5c6d7e8f901a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d'")}}],
                ARRAY[{{OrderedId}}], ARRAY[now()], ARRAY['k0000001'], ARRAY[{{Mac}}]);
            \endpipeline
            """);
    }
}
