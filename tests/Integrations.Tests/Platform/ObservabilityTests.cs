using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Integrations.Infrastructure.Telemetry;
using Integrations.Tests.Support;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using OpenTelemetry.Exporter;

namespace Integrations.Tests.Platform;

/// <summary>Telemetry as an operator receives it: OTLP/HTTP to a real collector endpoint, and the Prometheus scrape.</summary>
public sealed class ObservabilityTests(ApiFixture fixture) : IClassFixture<ApiFixture>
{
    private static readonly string ScrapeToken = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(24));

    [Fact]
    public async Task With_only_the_otlp_endpoint_set_spans_of_an_operation_and_a_log_record_with_its_trace_id_arrive_over_http_protobuf()
    {
        await using var collector = await OtlpReceiver.StartAsync();
        await using var api = fixture.Factory.WithWebHostBuilder(b => b
            .UseSetting(TelemetryServiceCollection.OtlpEndpointSetting, collector.Endpoint.ToString())
            // Export within a fraction of a second instead of the default 5 s (logs, spans) and 60 s (metrics).
            .UseSetting("OTEL_BSP_SCHEDULE_DELAY", "100")
            .UseSetting("OTEL_BLRP_SCHEDULE_DELAY", "100")
            .UseSetting("OTEL_METRIC_EXPORT_INTERVAL", "300"));
        var tenant = TestEnvironment.NewTenant();
        var key = await fixture.Factory.KeyForAsync(tenant);

        // The exporters run process-wide beside other tests' hosts: this request's trace id picks out its telemetry.
        var traceId = ActivityTraceId.CreateRandom().ToString();
        using var request = new HttpRequestMessage(HttpMethod.Get, "/integrations?limit=5");
        request.Headers.Authorization = new("Bearer", key.Key);
        request.Headers.Add("traceparent", $"00-{traceId}-{ActivitySpanId.CreateRandom()}-01");
        Assert.Equal(HttpStatusCode.OK, (await api.CreateClient().SendAsync(request)).StatusCode);

        var deadline = DateTime.UtcNow.AddSeconds(30);
        OtlpSpan[] spans = [];
        OtlpLogRecord[] logs = [];
        while (DateTime.UtcNow < deadline)
        {
            spans = collector.Spans().Where(s => s.TraceId == traceId).ToArray();
            logs = collector.LogRecords().Where(l => l.TraceId == traceId).ToArray();
            // The server span ends after the response is written, so it may come in a later export than the operation's.
            if (spans.Any(s => s.Scope == Telemetry.Name) && spans.Any(s => s.Scope == "Microsoft.AspNetCore") && logs.Length > 0
                && collector.MetricNames().Contains("integrations.operation.count")) break;
            await Task.Delay(100);
        }

        var server = Assert.Single(spans, s => s.Scope == "Microsoft.AspNetCore");
        var operation = Assert.Single(spans, s => s.Scope == Telemetry.Name);
        Assert.Equal(("integrations.query", server.SpanId), (operation.Name, operation.ParentSpanId));
        Assert.Contains(spans, s => s.Scope == "Npgsql");

        var line = Assert.Single(logs, l => l.Attributes.GetValueOrDefault("Route") == "/integrations/");
        Assert.Equal(server.SpanId, line.SpanId);
        Assert.Equal(("integrations.query", tenant, "200"),
            (line.Attributes["Operation"], line.Attributes["Tenant"], line.Attributes["Status"]));
        Assert.DoesNotContain(key.Key, string.Join(" ", logs.Select(l => l.Body + " " + string.Join(" ", l.Attributes.Values))));
        Assert.Contains("integrations.operation.count", collector.MetricNames());

        // http/protobuf, to the signal paths appended to the endpoint: the receiver answers nothing else.
        Assert.All(collector.Exports, e => Assert.Equal("application/x-protobuf", e.ContentType));
        Assert.Equal(["/v1/logs", "/v1/metrics", "/v1/traces"], collector.Exports.Select(e => e.Path).Distinct().Order());
    }

    [Theory]
    [InlineData(null, OtlpExportProtocol.HttpProtobuf)]
    [InlineData("grpc", OtlpExportProtocol.Grpc)]
    [InlineData("http/protobuf", OtlpExportProtocol.HttpProtobuf)]
    public void The_otlp_protocol_is_http_protobuf_unless_OTEL_EXPORTER_OTLP_PROTOCOL_names_another(string? setting, OtlpExportProtocol expected)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            [TelemetryServiceCollection.OtlpEndpointSetting] = "http://collector.example:4318",
            [TelemetryServiceCollection.OtlpProtocolSetting] = setting,
        }).Build();
        var services = new ServiceCollection().AddSingleton<IConfiguration>(configuration).AddLogging();
        services.AddIntegrationsTelemetry(configuration);
        using var provider = services.BuildServiceProvider();

        var options = provider.GetRequiredService<IOptionsMonitor<OtlpExporterOptions>>().CurrentValue;
        Assert.Equal((expected, new Uri("http://collector.example:4318")), (options.Protocol, options.Endpoint));
    }

    [Fact]
    public async Task The_metrics_scrape_needs_the_configured_token_and_shows_request_operation_tool_call_and_pool_metrics()
    {
        Assert.Equal(HttpStatusCode.NotFound, (await fixture.Factory.CreateClient().GetAsync("/metrics")).StatusCode);

        await using var api = fixture.Factory.WithWebHostBuilder(b => b.UseSetting(MetricsScrape.TokenSetting, ScrapeToken));
        var anonymous = api.CreateClient();
        var refused = await anonymous.GetAsync("/metrics");
        Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
        Assert.StartsWith("Bearer", refused.Headers.WwwAuthenticate.ToString());
        Assert.Equal("unauthenticated", JsonDocument.Parse(await refused.Content.ReadAsStringAsync()).RootElement.GetProperty("code").GetString());

        // A tenant's admin key is not the scrape token: the figures are every tenant's.
        var tenant = TestEnvironment.NewTenant();
        var admin = api.CreateClient();
        admin.DefaultRequestHeaders.Authorization = new("Bearer", (await fixture.Factory.KeyForAsync(tenant)).Key);
        Assert.Equal(HttpStatusCode.Unauthorized, (await admin.GetAsync("/metrics")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await Scrape(api, ScrapeToken[..^1] + "x")).StatusCode);

        await using var mcp = new TestMcpServer();
        await mcp.StartAsync();
        var registered = JsonDocument.Parse(await (await admin.PostAsJsonAsync("/integrations/mcp-servers",
            new { name = "metered", url = mcp.Endpoint.ToString() })).Content.ReadAsStringAsync()).RootElement;
        var serverId = registered.GetProperty("server").GetProperty("id").GetString();
        var echo = registered.GetProperty("tools").EnumerateArray().Single(t => t.GetProperty("name").GetString() == "echo").GetProperty("id").GetString();
        Assert.Equal(HttpStatusCode.OK,
            (await admin.PostAsJsonAsync($"/integrations/mcp-servers/{serverId}/tools/{echo}/invoke", new { arguments = new { message = "x" } })).StatusCode);

        var scraped = await Scrape(api, ScrapeToken);
        Assert.Equal(HttpStatusCode.OK, scraped.StatusCode);
        var text = await scraped.Content.ReadAsStringAsync();
        Assert.Contains("http_server_request_duration_seconds_bucket", text);
        Assert.Contains("integrations_operation_count_total{", text);
        Assert.Matches("integrations_governed_call_count_total\\{[^}]*kind=\"tool.invocation\"[^}]*outcome=\"completed\"", text);
        Assert.Contains("integrations_governed_call_duration_milliseconds_bucket{", text);
        Assert.Matches("db_client_connection_count\\{[^}]*db_client_connection_state=\"idle\"", text); // Npgsql's pool
        Assert.Contains("db_client_connection_max", text);
        var password = new Npgsql.NpgsqlConnectionStringBuilder(fixture.Factory.ConnectionString).Password;
        Assert.False(string.IsNullOrEmpty(password));
        Assert.DoesNotContain(password!, text); // the pool is named by its connection string, without the password

        var document = await (await api.CreateClient().GetAsync("/openapi/v1.json")).Content.ReadAsStringAsync();
        Assert.DoesNotContain("\"/metrics\"", document);
    }

    [Fact]
    public void A_scrape_token_shorter_than_32_characters_stops_start_up()
    {
        var configuration = new ConfigurationBuilder()
            .AddInMemoryCollection([new(MetricsScrape.TokenSetting, "short-token")]).Build();
        var e = Assert.Throws<InvalidOperationException>(() => MetricsScrape.IsEnabled(configuration));
        Assert.Contains("at least 32 characters", e.Message);
    }

    private static Task<HttpResponseMessage> Scrape(WebApplicationFactory<Program> api, string token)
    {
        var request = new HttpRequestMessage(HttpMethod.Get, "/metrics");
        request.Headers.Authorization = new("Bearer", token);
        return api.CreateClient().SendAsync(request);
    }
}
