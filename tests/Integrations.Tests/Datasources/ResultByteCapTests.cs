using System.Text;
using System.Text.Json;
using Integrations.Common;
using Integrations.Features.Audit;
using Integrations.Features.Datasources;
using Integrations.Infrastructure.Datasources;
using Integrations.Tests.Support;

namespace Integrations.Tests.Datasources;

/// <summary>
/// datasources.query stops at <c>Integrations:Datasources:MaxResultBytes</c> as well as at the row cap: the rows that fit
/// come back with <c>truncated_reason: byte_limit</c>, and a first row over the cap is a 502 recorded as a failed query.
/// The datasource is registered through the fixture's host; the runs go through a second host, on the same database,
/// whose cap is 64 KiB.
/// </summary>
public sealed class ResultByteCapTests(DatasourceFixture fixture) : IClassFixture<DatasourceFixture>, IAsyncLifetime
{
    private const int Cap = 64 * 1024;
    private ServiceHost _capped = null!;

    public async Task InitializeAsync() =>
        _capped = await ServiceHost.StartAsync(new Dictionary<string, string?> { ["Integrations:Datasources:MaxResultBytes"] = Cap.ToString() });

    public async Task DisposeAsync() => await _capped.DisposeAsync();

    private Task<Result<RunQuery.Response>> RunAsync(ServiceHost host, string tenant, Guid datasourceId, string name) =>
        host.SendAsync(new RunQuery.Command(datasourceId, name), tenant);

    /// <summary>The bytes of the rows as the API writes them (System.Text.Json's default encoder).</summary>
    private static int JsonLength(RunQuery.Response response) => Encoding.UTF8.GetByteCount(JsonSerializer.Serialize(response.Rows));

    [Fact]
    public async Task Wide_rows_are_cut_at_the_byte_cap_with_truncated_reason_byte_limit()
    {
        var tenant = TestEnvironment.NewTenant();
        var datasource = await fixture.RegisterAsync(tenant);
        await fixture.DefineAsync(tenant, datasource.Id, "wide", "SELECT i AS id, repeat('x', 1000) AS payload FROM generate_series(1, 500) AS i ORDER BY i");
        await fixture.DefineAsync(tenant, datasource.Id, "wide-non-ascii", "SELECT i AS id, repeat('é', 1000) AS payload FROM generate_series(1, 500) AS i ORDER BY i");
        await fixture.DefineAsync(tenant, datasource.Id, "wide-bytea",
            "SELECT i AS id, decode(repeat('ab', 3000), 'hex') AS payload FROM generate_series(1, 500) AS i ORDER BY i");
        await fixture.DefineAsync(tenant, datasource.Id, "third-too-big",
            "SELECT i AS id, CASE WHEN i = 3 THEN repeat('x', 100000) ELSE 'small' END AS payload FROM generate_series(1, 5) AS i ORDER BY i");

        var wide = await RunAsync(_capped, tenant, datasource.Id, "wide");
        Assert.True(wide.IsSuccess, wide.Error?.Detail);
        Assert.Equal((true, "byte_limit"), (wide.Value.Truncated, wide.Value.TruncatedReason));
        Assert.Equal(Enumerable.Range(1, wide.Value.RowCount), wide.Value.Rows.Select(r => (int)r[0]!));
        // Within the cap, and cut at the row that did not fit, not far before it.
        Assert.InRange(JsonLength(wide.Value), Cap - 2 * 1020, Cap);

        // Text counts as it is written: 'é' becomes the six bytes \u00E9, so a sixth as many of these rows fit.
        var nonAscii = (await RunAsync(_capped, tenant, datasource.Id, "wide-non-ascii")).Value;
        Assert.Equal("byte_limit", nonAscii.TruncatedReason);
        Assert.InRange(nonAscii.RowCount, wide.Value.RowCount / 6 - 1, wide.Value.RowCount / 6 + 1);
        Assert.InRange(JsonLength(nonAscii), Cap - 2 * 6020, Cap);

        // bytea counts as the base64 it is written as: 3000 bytes are 4000 characters.
        var bytea = (await RunAsync(_capped, tenant, datasource.Id, "wide-bytea")).Value;
        Assert.Equal("byte_limit", bytea.TruncatedReason);
        Assert.Equal(Convert.ToBase64String(Enumerable.Repeat((byte)0xab, 3000).ToArray()), (string)bytea.Rows[0][1]!);
        Assert.InRange(JsonLength(bytea), Cap - 2 * 4020, Cap);

        // A big row after rows that fit ends the result there.
        var third = (await RunAsync(_capped, tenant, datasource.Id, "third-too-big")).Value;
        Assert.Equal((2, true, "byte_limit"), (third.RowCount, third.Truncated, third.TruncatedReason));

        var completed = (await _capped.SendAsync(new ListAuditEvents.Query(Action: RunQuery.Completed), tenant)).Value.Items[0];
        Assert.Equal("byte_limit", completed.Details.GetProperty("truncated_reason").GetString());
        Assert.Equal(2, completed.Details.GetProperty("row_count").GetInt32());
    }

    [Fact]
    public async Task The_row_cap_still_reports_row_limit_and_a_result_that_fits_both_caps_is_not_truncated()
    {
        var tenant = TestEnvironment.NewTenant();
        var datasource = await fixture.RegisterAsync(tenant);
        await fixture.DefineAsync(tenant, datasource.Id, "narrow", "SELECT id, name FROM customers ORDER BY id", rowLimit: 30);
        await fixture.DefineAsync(tenant, datasource.Id, "wide-but-few", "SELECT i AS id, repeat('x', 1000) AS payload FROM generate_series(1, 40) AS i", rowLimit: 30);
        await fixture.DefineAsync(tenant, datasource.Id, "all-fit", "SELECT i AS id, repeat('x', 1000) AS payload FROM generate_series(1, 20) AS i");

        var narrow = (await RunAsync(_capped, tenant, datasource.Id, "narrow")).Value;
        var wideButFew = (await RunAsync(_capped, tenant, datasource.Id, "wide-but-few")).Value;
        var allFit = (await RunAsync(_capped, tenant, datasource.Id, "all-fit")).Value;

        Assert.Equal((30, true, "row_limit"), (narrow.RowCount, narrow.Truncated, narrow.TruncatedReason));
        Assert.Equal((30, true, "row_limit"), (wideButFew.RowCount, wideButFew.Truncated, wideButFew.TruncatedReason));
        Assert.Equal((20, false, null), (allFit.RowCount, allFit.Truncated, allFit.TruncatedReason));
    }

    [Theory]
    [InlineData("text", "SELECT 1 AS id, repeat('x', 70000) AS payload")]
    [InlineData("bytea", "SELECT 1 AS id, decode(repeat('ab', 60000), 'hex') AS payload")]
    [InlineData("array", "SELECT 1 AS id, array_fill(12345::bigint, ARRAY[20000]) AS payload")]
    public async Task A_first_row_over_the_byte_cap_is_502_upstream_error_recorded_as_a_failed_query(string kind, string sql)
    {
        var tenant = TestEnvironment.NewTenant();
        var datasource = await fixture.RegisterAsync(tenant);
        var defined = await fixture.DefineAsync(tenant, datasource.Id, $"too-big-{kind}", sql);

        var result = await RunAsync(_capped, tenant, datasource.Id, defined.Name);

        Assert.Equal(("upstream_error", 502), (result.Error?.Code, result.Error?.Status));
        Assert.Contains($"result cap of {Cap} bytes", result.Error!.Detail);
        Assert.Contains("MaxResultBytes", result.Error.Detail);
        Assert.Equal((long)Cap, result.Error.Extensions!["max_result_bytes"]);
        var failed = (await _capped.SendAsync(new ListAuditEvents.Query(Action: RunQuery.Failed), tenant)).Value.Items.Single();
        Assert.Equal(("upstream_error", defined.Id.ToString()), (failed.Details.GetProperty("code").GetString(), failed.SubjectId));
        Assert.Contains("result cap", failed.Details.GetProperty("reason").GetString());

        // The same query under the default cap (4 MiB) returns its row.
        var uncapped = await RunAsync(fixture.Host, tenant, datasource.Id, defined.Name);
        Assert.True(uncapped.IsSuccess, uncapped.Error?.Detail);
        Assert.Equal((1, false), (uncapped.Value.RowCount, uncapped.Value.Truncated));
    }

    [Fact]
    public async Task The_default_cap_is_4_MiB()
    {
        var tenant = TestEnvironment.NewTenant();
        var datasource = await fixture.RegisterAsync(tenant);
        await fixture.DefineAsync(tenant, datasource.Id, "five-mib", "SELECT i AS id, repeat('x', 5000) AS payload FROM generate_series(1, 1000) AS i ORDER BY i");

        var result = (await RunAsync(fixture.Host, tenant, datasource.Id, "five-mib")).Value;

        Assert.Equal("byte_limit", result.TruncatedReason);
        Assert.InRange(JsonLength(result), 4 * 1024 * 1024 - 3 * 5020, 4 * 1024 * 1024);
        Assert.Equal(4 * 1024 * 1024, DatasourceOptions.FromConfiguration(TestEnvironment.Configuration("Host=unused")).MaxResultBytes);
    }

    [Fact]
    public void A_cap_below_1024_bytes_stops_start_up_with_the_setting_named()
    {
        var configuration = TestEnvironment.Configuration("Host=unused", new Dictionary<string, string?> { ["Integrations:Datasources:MaxResultBytes"] = "100" });

        var error = Assert.Throws<InvalidOperationException>(() => DatasourceOptions.FromConfiguration(configuration));

        Assert.Contains("Integrations:Datasources", error.Message);
    }

    public static TheoryData<object> Values => new()
    {
        "plain", "é, 😀, \"quotes\", <&>+'` and \\ \n", true, short.MinValue, int.MinValue, long.MinValue, decimal.MinValue, -1.2345678e-30m,
        float.MinValue, double.Epsilon, -double.MaxValue, DateTime.MaxValue, new DateTimeOffset(2024, 2, 29, 23, 59, 59, 999, TimeSpan.FromHours(-9.5)),
        DateOnly.MaxValue, TimeOnly.MaxValue, Guid.NewGuid(), new byte[] { 1, 2, 3, 4 }, new long?[] { long.MinValue, null, 1 },
        new[] { "a", "b" }, TimeSpan.FromDays(-1234.5678),
    };

    [Theory]
    [MemberData(nameof(Values))]
    public void The_size_estimate_is_never_below_what_the_value_takes_as_json(object value)
    {
        var json = JsonSerializer.Serialize(SqlGateway.ToJson(value, "text"));

        Assert.True(Encoding.UTF8.GetByteCount(json) <= SqlGateway.JsonBytes(value, "text"), $"{json}: estimated {SqlGateway.JsonBytes(value, "text")}");
    }

    [Theory]
    [InlineData("""{"name": "customer 4", "n": 4, "tags": ["a", "b"]}""")]
    [InlineData("""{"quote": "say \"hi\"", "path": "c:\\x", "text": "é 😀 <&>", "line": "a\nb"}""")]
    [InlineData("\"just a string\"")]
    public void A_json_value_is_estimated_near_its_length_and_never_below_it(string text)
    {
        var json = JsonSerializer.Serialize(SqlGateway.ToJson(text, "jsonb"));

        Assert.InRange(SqlGateway.JsonBytes(text, "jsonb"), Encoding.UTF8.GetByteCount(json), 2 * text.Length + 30);
    }
}
