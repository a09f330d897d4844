using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.Json;
using Integrations.Tests.Support;
using Npgsql;

namespace Integrations.Tests.Platform;

/// <summary>
/// The operator's commands of build.sh as the README gives them (connection-string, psql, api-key, demo-db), on a
/// project-local cluster of their own (INTEGRATIONS_DATA_DIR), and the README's datasource example against the demo
/// database they create, with the README's bodies.
/// </summary>
public sealed class BuildScriptTests : IAsyncLifetime
{
    private readonly string _data = Path.Combine(Path.GetTempPath(), $"integrations-buildsh-{Guid.NewGuid():N}");

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        await RunAsync("stop-db");
        await RunAsync("bash", Path.Combine(TestEnvironment.RepositoryRoot(), "eng", "pg.sh"), "destroy", Path.Combine(_data, "postgres"));
        try { Directory.Delete(_data, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    [Fact]
    public async Task Demo_db_psql_connection_string_and_api_key_work_on_the_local_cluster_and_the_readme_query_runs()
    {
        var demo = await RunAsync("demo-db");
        Assert.True(demo.Code == 0, demo.Error);
        var values = demo.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Split('=', 2)).ToDictionary(p => p[0], p => p[1]);
        var port = int.Parse(values["SHOP_PORT"], System.Globalization.CultureInfo.InvariantCulture);
        var password = values["SHOP_PASSWORD"];
        Assert.True(password.Length >= 20);

        var strings = await RunAsync("connection-string");
        Assert.Equal(0, strings.Code);
        var lines = strings.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Length);
        Assert.Contains("Username=integrations;", lines[0]);
        Assert.Contains("Username=integrations_service;", lines[1]);
        Assert.Contains($"Port={port};", lines[0]);

        var count = await RunAsync("psql", "-d", "shop", "-tAc", "SELECT count(*) FROM orders WHERE customer_id = 42");
        Assert.True(count.Code == 0, count.Error);
        Assert.Equal("10", count.Output.Trim());

        // The role reads and does nothing else.
        var reader = new NpgsqlConnectionStringBuilder { Host = "127.0.0.1", Port = port, Database = "shop", Username = "shop_reader", Password = password, Pooling = false };
        await using (var connection = new NpgsqlConnection(reader.ConnectionString))
        {
            await connection.OpenAsync();
            await using var write = new NpgsqlCommand("UPDATE orders SET total = 0", connection);
            var refused = await Assert.ThrowsAsync<PostgresException>(() => write.ExecuteNonQueryAsync());
            Assert.Equal(PostgresErrorCodes.InsufficientPrivilege, refused.SqlState);
        }

        var key = await RunAsync("api-key", "--tenant", "ops", "--scopes", "integrations:read", "--name", "from-build-sh");
        Assert.True(key.Code == 0, key.Error);
        var printed = key.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Last().Trim();
        Assert.StartsWith("ik_", printed);
        Assert.DoesNotContain(printed, key.Error);
        var check = await RunAsync("psql", "-tAc", "SELECT tenant_id || ' ' || name || ' ' || array_to_string(scopes, ',') FROM api_keys");
        Assert.Equal("ops from-build-sh integrations:read", check.Output.Trim());

        // The README's datasource example, its bodies as written, against the demo database.
        await using var api = await ApiFactory.StartAsync();
        var client = await api.ClientForAsync(TestEnvironment.NewTenant());
        var credential = await PostAsync(client, "/credentials",
            $$"""{"name":"shop-reader","type":"basic_auth","username":"shop_reader","password":"{{password}}"}""");
        var datasource = await PostAsync(client, "/integrations/datasources",
            $$"""
            {"name":"shop","host":"127.0.0.1","port":{{port}},"database":"shop","username":"shop_reader",
             "credential_ref":"{{credential.GetProperty("reference").GetString()}}","tls_mode":"disable","row_limit":500,"statement_timeout_ms":3000}
            """);
        var id = datasource.GetProperty("id").GetString();
        await PostAsync(client, $"/integrations/datasources/{id}/queries",
            """
            {"name":"orders-by-customer","sql":"SELECT id, total FROM orders WHERE customer_id = @customer ORDER BY id DESC",
             "parameters":[{"name":"customer","type":"integer"}]}
            """);
        var result = await PostAsync(client, $"/integrations/datasources/{id}/queries/orders-by-customer", """{"parameters":{"customer":42}}""");
        Assert.Equal(10, result.GetProperty("row_count").GetInt32());
        Assert.Equal(28, result.GetProperty("rows")[0][0].GetInt32());
    }

    private static async Task<JsonElement> PostAsync(HttpClient client, string path, string json)
    {
        using var response = await client.PostAsync(path, new StringContent(json, System.Text.Encoding.UTF8, "application/json"));
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"{path}: {(int)response.StatusCode} {body}");
        return JsonDocument.Parse(body).RootElement.Clone();
    }

    private Task<(int Code, string Output, string Error)> RunAsync(params string[] args) =>
        args[0] == "bash" ? RunProcessAsync("bash", args[1..]) : RunProcessAsync("bash", [Path.Combine(TestEnvironment.RepositoryRoot(), "build.sh"), .. args]);

    private async Task<(int Code, string Output, string Error)> RunProcessAsync(string file, string[] args)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = TestEnvironment.RepositoryRoot() };
        foreach (var arg in args) start.ArgumentList.Add(arg);
        start.Environment["INTEGRATIONS_DATA_DIR"] = _data;
        start.Environment.Remove("ConnectionStrings__Integrations");
        start.Environment.Remove("ConnectionStrings__IntegrationsOwner");
        start.Environment.Remove("Integrations__Vault__MasterKey");
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, await output, await error);
    }

}
