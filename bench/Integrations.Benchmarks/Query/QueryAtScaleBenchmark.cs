using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Dapper;
using Integrations.Benchmarks.Support;
using Integrations.Common;
using Integrations.Features.Integrations;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Security;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Integrations.Benchmarks.Query;

/// <summary>
/// Benchmark 1: integrations.query on a 1,000,000-row table, first page and a page 1,000 pages deep of one tenant,
/// through the mediator in process and through HTTP (the real Kestrel host), one caller at a time. The four
/// measurements are interleaved request by request so that whatever else the shared machine does hits them alike.
/// </summary>
public sealed class QueryAtScaleBenchmark(BenchSettings settings, Report report)
{
    private const double TargetP99Ms = 5.0;

    private sealed record Case(string Path, string Page, Func<Task> Run)
    {
        public List<Latency> Repetitions { get; } = [];
    }

    public async Task RunAsync(string connectionString)
    {
        var md = new StringBuilder();
        var seeder = new IntegrationSeeder(settings.SeedRows, settings.SeedTenants, settings.BigTenantRows);
        Console.WriteLine($"[query] seeding {settings.SeedRows:N0} integrations across {settings.SeedTenants:N0} tenants (COPY)...");
        var seeded = await seeder.SeedAsync(connectionString);
        var others = settings.SeedRows - settings.BigTenantRows;
        md.AppendLine($"**Data.** {settings.SeedRows:N0} rows in `cus_integrations` across {settings.SeedTenants:N0} tenants, loaded with Npgsql binary COPY " +
                      $"in {seeded.Copy.TotalSeconds:0.0} s ({settings.SeedRows / seeded.Copy.TotalSeconds:N0} rows/s; secondary indexes dropped for the load and rebuilt from " +
                      $"the migrations' own definitions in {seeded.Indexes.TotalSeconds:0.0} s), then `VACUUM (ANALYZE)` ({seeded.Analyze.TotalSeconds:0.0} s). " +
                      $"Table {Fmt.Mb(seeded.TableBytes)}, page index `cus_integrations_page` {Fmt.Mb(seeded.PageIndexBytes)}.");
        md.AppendLine();
        md.AppendLine($"The data is deliberately skewed: 10,000 tenants × 100 rows would leave no tenant with a page 1,000 pages deep, so tenant `{IntegrationSeeder.BigTenant}` " +
                      $"holds {settings.BigTenantRows:N0} rows ({seeded.BigTenantLiveRows:N0} live) and the other {Math.Max(1, settings.SeedTenants - 1):N0} tenants share the remaining {others:N0} " +
                      $"(about {others / Math.Max(1, settings.SeedTenants - 1):N0} each). Rows were written in time order with tenants interleaved, as real traffic writes them, " +
                      "so one tenant's rows are spread over the whole heap; UUIDv7 ids carry those timestamps. 1% of rows are soft-deleted.");
        md.AppendLine();

        await using var service = InProcessService.Create(connectionString);
        var caller = InProcessService.CallerFor(IntegrationSeeder.BigTenant);
        var limit = settings.PageLimit;

        // The deep cursor straight from the data: the id of the last row of page DeepPages.
        Guid deepAfter;
        await using (var connection = new NpgsqlConnection(connectionString))
        {
            deepAfter = await connection.ExecuteScalarAsync<Guid>(
                "SELECT id FROM cus_integrations WHERE tenant_id = @t AND deleted_at IS NULL ORDER BY id DESC OFFSET @o LIMIT 1",
                new { t = IntegrationSeeder.BigTenant, o = limit * settings.DeepPages - 1 });
        }
        var deepCursor = Cursor.Encode(deepAfter);

        // ...and by walking: following next_cursor DeepPages times must arrive at the same cursor.
        var walk = Stopwatch.StartNew();
        string? cursor = null;
        for (var page = 0; page < settings.DeepPages; page++)
        {
            var result = await service.SendAsync(new QueryIntegrations.Query(Limit: limit, Cursor: cursor), caller);
            cursor = result.Value.NextCursor ?? throw new InvalidOperationException($"the walk ended at page {page + 1}");
        }
        walk.Stop();
        if (cursor != deepCursor) throw new InvalidOperationException("walking the pages did not arrive at the cursor computed from the data");
        md.AppendLine($"**Deep page.** The cursor {settings.DeepPages:N0} pages in (limit {limit}: after row {limit * settings.DeepPages:N0} of the tenant's live rows, newest first) " +
                      $"was computed from the data with `OFFSET`, and checked by walking `next_cursor` {settings.DeepPages:N0} times through the mediator, which arrived at the same cursor " +
                      $"in {walk.Elapsed.TotalSeconds:0.00} s ({walk.Elapsed.TotalMilliseconds / settings.DeepPages:0.00} ms per page).");
        md.AppendLine();

        Console.WriteLine("[query] starting the API host...");
        await using var api = await ApiProcess.StartReadyAsync(settings, connectionString, "api-query");
        var apiKeys = service.Services.GetRequiredService<ApiKeys>();
        var key = (await apiKeys.CreateAsync(IntegrationSeeder.BigTenant, "bench-query", [Scopes.Read], CancellationToken.None)).Key;
        var smallTenant = IntegrationSeeder.SmallTenant(42);
        var smallCaller = InProcessService.CallerFor(smallTenant);
        var smallKey = (await apiKeys.CreateAsync(smallTenant, "bench-query", [Scopes.Read], CancellationToken.None)).Key;
        using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 1, UseCookies = false }) { BaseAddress = api.BaseAddress };

        var firstQuery = new QueryIntegrations.Query(Limit: limit);
        var deepQuery = new QueryIntegrations.Query(Limit: limit, Cursor: deepCursor);
        var firstUrl = $"/integrations?limit={limit}";
        var deepUrl = $"/integrations?limit={limit}&cursor={Uri.EscapeDataString(deepCursor)}";

        async Task ViaMediator(QueryIntegrations.Query query, Caller asCaller)
        {
            var result = await service.SendAsync(query, asCaller);
            if (!result.IsSuccess || result.Value.Items.Count == 0) throw new InvalidOperationException($"unexpected answer: {result.Error?.Code ?? "empty page"}");
        }
        async Task ViaHttp(string url, string apiKey)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, url);
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
            using var response = await http.SendAsync(request);
            var body = await response.Content.ReadAsByteArrayAsync();
            if (response.StatusCode != HttpStatusCode.OK) throw new InvalidOperationException($"GET {url} answered {(int)response.StatusCode}: {Encoding.UTF8.GetString(body)}");
        }

        // Once, outside the timing: HTTP answers the same full pages as the mediator.
        foreach (var url in new[] { firstUrl, deepUrl })
        {
            using var check = new HttpRequestMessage(HttpMethod.Get, url);
            check.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
            using var answer = await http.SendAsync(check);
            using var document = JsonDocument.Parse(await answer.Content.ReadAsStringAsync());
            if (document.RootElement.GetProperty("items").GetArrayLength() != limit || document.RootElement.GetProperty("next_cursor").ValueKind != JsonValueKind.String)
                throw new InvalidOperationException($"GET {url} did not answer a full page with a next_cursor");
        }

        var cases = new[]
        {
            new Case("mediator", "first page", () => ViaMediator(firstQuery, caller)),
            new Case("mediator", $"deep page ({settings.DeepPages:N0} pages in)", () => ViaMediator(deepQuery, caller)),
            new Case("HTTP", "first page", () => ViaHttp(firstUrl, key)),
            new Case("HTTP", $"deep page ({settings.DeepPages:N0} pages in)", () => ViaHttp(deepUrl, key)),
            new Case("mediator", $"first page, typical tenant `{smallTenant}`", () => ViaMediator(firstQuery, smallCaller)),
            new Case("HTTP", $"first page, typical tenant `{smallTenant}`", () => ViaHttp(firstUrl, smallKey)),
        };

        Console.WriteLine($"[query] warm-up {settings.QueryWarmup} x {cases.Length}, then {settings.Repetitions} repetitions of {settings.QueryIterations} x {cases.Length}...");
        for (var i = 0; i < settings.QueryWarmup; i++)
        {
            foreach (var c in cases) await c.Run();
        }
        for (var rep = 0; rep < settings.Repetitions; rep++)
        {
            var samples = cases.Select(_ => new Latency(settings.QueryIterations)).ToArray();
            for (var i = 0; i < settings.QueryIterations; i++)
            {
                for (var c = 0; c < cases.Length; c++)
                {
                    var started = Stopwatch.GetTimestamp();
                    await cases[c].Run();
                    samples[c].Add(started);
                }
            }
            for (var c = 0; c < cases.Length; c++) cases[c].Repetitions.Add(samples[c]);
            Console.WriteLine($"[query] repetition {rep + 1}: " + string.Join(", ", cases.Select((c, i) => $"{c.Path} {c.Page} p50 {Fmt.Ms(samples[i].Percentile(50))} p99 {Fmt.Ms(samples[i].Percentile(99))} ms")));
        }

        md.AppendLine($"**Latency.** One caller, requests one after another; each repetition times {settings.QueryIterations:N0} requests of each case, interleaved " +
                      $"(after {settings.QueryWarmup} warm-up rounds). The mediator figure is what an in-process caller pays: a DI scope, the caller context, `IMediator.Send` through " +
                      "every behavior, a pooled connection, the transaction with `SET ROLE`/`app.tenant_id`, the query, the rollback. The HTTP figure adds Kestrel, JSON and the " +
                      "API-key check (one more query per request) on a keep-alive connection from a client on the same machine. " +
                      $"p50 and p99 are the medians over the {settings.Repetitions} repetitions; the range is the lowest and highest p99 of a repetition. " +
                      $"The first four rows are the figures the issue asks for (tenant `{IntegrationSeeder.BigTenant}`); the last two show the first page of an ordinary tenant " +
                      "(about a hundred rows), whose plan differs.");
        md.AppendLine();
        md.AppendLine("| path | page | p50 ms | p99 ms | p99 range ms | max ms | requests | target p99 ≤ 5 ms |");
        md.AppendLine("|---|---|---|---|---|---|---|---|");
        foreach (var c in cases)
        {
            var p50 = Latency.Median(c.Repetitions.Select(r => r.Percentile(50)));
            var p99s = c.Repetitions.Select(r => r.Percentile(99)).ToArray();
            var p99 = Latency.Median(p99s);
            var met = p99 <= TargetP99Ms;
            md.AppendLine($"| {c.Path} | {c.Page} | {Fmt.Ms(p50)} | {Fmt.Ms(p99)} | {Fmt.Ms(p99s.Min())}–{Fmt.Ms(p99s.Max())} | {Fmt.Ms(c.Repetitions.Max(r => r.Max))} | {c.Repetitions.Sum(r => r.Count):N0} | {Fmt.Met(met)} |");
            report.Target(new TargetResult($"1. integrations.query, {c.Path}, {c.Page}", "p99 ≤ 5 ms", $"p99 {Fmt.Ms(p99)} ms (p50 {Fmt.Ms(p50)} ms)", met));
        }
        md.AppendLine();

        md.AppendLine("**Plans.** `EXPLAIN (ANALYZE, BUFFERS)` of the handler's SQL with the same parameters, run as the handler runs it: inside a transaction that switched to " +
                      "`integrations_app` and set `app.tenant_id`, so the row-level-security predicate is part of the plan. The service prepares its statements " +
                      "(Npgsql auto-prepare), so the plan that serves requests is the prepared statement's after its first five executions (`plan_cache_mode = auto` may " +
                      "switch to a generic plan then); it is shown first. The plan of the same SQL sent unprepared (a custom plan for these parameter values) follows. " +
                      "Each is the third run, so the cache is as warm as during the timing.");
        md.AppendLine();
        foreach (var (title, tenant, after) in new[]
                 {
                     ("First page", IntegrationSeeder.BigTenant, (Guid?)null),
                     ($"Deep page ({settings.DeepPages:N0} pages in)", IntegrationSeeder.BigTenant, deepAfter),
                     ($"First page, typical tenant `{smallTenant}`", smallTenant, (Guid?)null),
                 })
        {
            md.AppendLine($"{title}, as prepared by the service:");
            md.AppendLine();
            md.AppendLine("```");
            md.AppendLine(await ExplainAsync(connectionString, tenant, limit, after, prepared: true));
            md.AppendLine("```");
            md.AppendLine();
            md.AppendLine($"<details><summary>{title}, unprepared (custom plan)</summary>");
            md.AppendLine();
            md.AppendLine("```");
            md.AppendLine(await ExplainAsync(connectionString, tenant, limit, after, prepared: false));
            md.AppendLine("```");
            md.AppendLine();
            md.AppendLine("</details>");
            md.AppendLine();
        }
        report.Add(new Section(1, "1. integrations.query at scale", md.ToString()));
    }

    /// <summary>The SQL QueryIntegrations.Handler builds for a page without filters.</summary>
    private static string HandlerSql(bool withCursor) =>
        $"SELECT {Integration.Columns} FROM cus_integrations WHERE tenant_id = @TenantId AND deleted_at IS NULL" +
        (withCursor ? " AND id < @After" : "") + " ORDER BY id DESC LIMIT @Take";

    private static async Task<string> ExplainAsync(string connectionString, string tenant, int limit, Guid? after, bool prepared)
    {
        await using var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(connectionString) { MaxAutoPrepare = 0, Pooling = false }.ConnectionString);
        await connection.OpenAsync();
        var sql = HandlerSql(after is not null);
        var args = new { TenantId = tenant, After = after ?? Guid.Empty, Take = limit + 1 };
        if (prepared)
        {
            // The same statement as a server-side prepared statement, with the parameter types Npgsql sends.
            var positional = sql.Replace("@TenantId", "$1").Replace("@After", "$2").Replace("@Take", "$3");
            await connection.ExecuteAsync($"PREPARE page(text, uuid, integer) AS {positional}");
        }
        List<string> plan = [];
        for (var run = 0; run < 3; run++)
        {
            await using var transaction = await connection.BeginTransactionAsync();
            await connection.ExecuteAsync("SELECT set_config('role', @role, true), set_config('app.tenant_id', @tenant, true)",
                new { role = TenantSession.AppRole, tenant }, transaction);
            if (prepared)
            {
                // Literals: EXECUTE's arguments cannot be bind parameters. The values are this benchmark's own.
                var execute = $"EXECUTE page('{tenant}', '{args.After}', {args.Take})";
                for (var i = 0; i < 6; i++) await connection.ExecuteAsync(execute, transaction: transaction);
                plan = (await connection.QueryAsync<string>("EXPLAIN (ANALYZE, BUFFERS) " + execute, transaction: transaction)).AsList();
            }
            else
            {
                plan = (await connection.QueryAsync<string>("EXPLAIN (ANALYZE, BUFFERS) " + sql, args, transaction)).AsList();
            }
            await transaction.RollbackAsync();
        }
        return string.Join('\n', plan);
    }
}
