using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Integrations.Infrastructure.Http;
using Integrations.Infrastructure.Logging;
using Integrations.Tests.Support;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Tests.Http;

/// <summary>The host's JSON console logs as an operator reads them: one line per request, and what every line carries.</summary>
public sealed class RequestLogTests
{
    [Fact]
    public async Task Each_request_is_one_json_line_with_route_status_duration_operation_tenant_and_trace_and_never_the_key_or_the_body()
    {
        var console = new LockedStream();
        var tenant = TestEnvironment.NewTenant();
        var secret = "sk-obs-" + Guid.NewGuid().ToString("N");
        var requestId = "log-" + Guid.NewGuid().ToString("N");
        string key;
        await using (var api = await ApiFactory.StartAsync(services => services.AddSingleton(new ConsoleLogOutput(console))))
        {
            key = (await api.KeyForAsync(tenant)).Key;
            var client = api.CreateClient();
            client.DefaultRequestHeaders.Authorization = new("Bearer", key);
            client.DefaultRequestHeaders.Add("X-Request-Id", requestId);

            var stored = await client.PostAsJsonAsync("/credentials", new { name = "logged", type = "api_key", secret });
            Assert.Equal(HttpStatusCode.Created, stored.StatusCode);
            Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync($"/no-such-route/{secret}?q={secret}")).StatusCode);
            var stranger = api.CreateClient();
            stranger.DefaultRequestHeaders.Add("X-Request-Id", requestId);
            stranger.DefaultRequestHeaders.Authorization = new("Bearer", key + "x");
            Assert.Equal(HttpStatusCode.Unauthorized, (await stranger.GetAsync("/integrations")).StatusCode);

            // The test server hands an answer over before the pipeline has unwound, and the log is written from a
            // queue: wait for the three lines rather than race them.
            for (var deadline = DateTime.UtcNow.AddSeconds(10); DateTime.UtcNow < deadline; await Task.Delay(50))
            {
                if (console.Text().Split('\n').Count(l => l.Contains(requestId) && l.Contains(typeof(RequestLog).FullName!)) >= 3) break;
            }
        }
        var output = console.Text();

        Assert.DoesNotContain(secret, output);
        Assert.DoesNotContain(key, output);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Where(l => l.StartsWith('{')).Select(l => JsonDocument.Parse(l).RootElement)
            .Where(l => l.GetProperty("Category").GetString() == typeof(RequestLog).FullName && ScopeValue(l, "RequestId") == requestId)
            .ToList();
        Assert.Equal(3, lines.Count);

        var store = Assert.Single(lines, l => State(l, "Method") == "POST");
        Assert.Matches(@"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", store.GetProperty("Timestamp").GetString());
        Assert.Equal("Information", store.GetProperty("LogLevel").GetString());
        Assert.Equal(("/credentials/", "201", "credentials.store", tenant),
            (State(store, "Route"), State(store, "Status"), State(store, "Operation"), State(store, "Tenant")));
        Assert.True(double.Parse(State(store, "DurationMs")!, System.Globalization.CultureInfo.InvariantCulture) > 0);
        Assert.Matches("^[0-9a-f]{32}$", ScopeValue(store, "TraceId"));
        Assert.Matches("^[0-9a-f]{16}$", ScopeValue(store, "SpanId"));
        Assert.Equal(("credentials.store", tenant), (ScopeValue(store, "Operation"), ScopeValue(store, "Tenant")));

        var unmatched = Assert.Single(lines, l => State(l, "Status") == "404");
        Assert.Equal((RequestLog.Unmatched, tenant), (State(unmatched, "Route"), State(unmatched, "Tenant")));
        var refused = Assert.Single(lines, l => State(l, "Status") == "401");
        Assert.Equal(("/integrations/", "integrations.query", ""), (State(refused, "Route"), State(refused, "Operation"), State(refused, "Tenant")));
    }

    private static string? State(JsonElement line, string name) =>
        line.GetProperty("State").TryGetProperty(name, out var value) ? value.ToString() : null;

    private static string? ScopeValue(JsonElement line, string name) =>
        line.TryGetProperty("Scopes", out var scopes)
            ? scopes.EnumerateArray().Where(s => s.ValueKind == JsonValueKind.Object && s.TryGetProperty(name, out _))
                .Select(s => s.GetProperty(name).ToString()).FirstOrDefault()
            : null;

    /// <summary>What the host's log writer thread writes, read by the test while it writes.</summary>
    private sealed class LockedStream : MemoryStream
    {
        public override void Write(byte[] buffer, int offset, int count)
        {
            lock (this) base.Write(buffer, offset, count);
        }

        public string Text()
        {
            lock (this) return System.Text.Encoding.UTF8.GetString(GetBuffer(), 0, (int)Length);
        }
    }
}
