using System.Net.Http.Headers;
using Integrations.Common;
using Integrations.Infrastructure.Security;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Tests.Support;

/// <summary>The HTTP host (Program) on the test database, and clients that carry a fresh API key.</summary>
public sealed class ApiFactory : WebApplicationFactory<Program>
{
    private readonly string _connectionString;
    private readonly Action<IServiceCollection>? _services;

    private ApiFactory(string connectionString, Action<IServiceCollection>? services = null)
    {
        _connectionString = connectionString;
        _services = services;
    }

    /// <param name="services">Registrations that replace the host's own (e.g. a <c>ConsoleLogOutput</c> to read the log from).</param>
    public static async Task<ApiFactory> StartAsync(Action<IServiceCollection>? services = null) => new(await TestEnvironment.ConnectionStringAsync(), services);

    /// <summary>The HTTP host on a database of the test's own (e.g. one behind a <see cref="TcpFaultProxy"/>).</summary>
    public static ApiFactory StartOn(string connectionString) => new(connectionString);

    public string ConnectionString => _connectionString;

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.UseEnvironment("Testing");
        foreach (var (key, value) in TestEnvironment.Configuration(_connectionString).AsEnumerable())
        {
            if (value is not null) builder.UseSetting(key, value);
        }
        if (_services is not null) builder.ConfigureServices(_services);
    }

    public async Task<HttpClient> ClientForAsync(string tenantId, params string[] scopes)
    {
        var key = await KeyForAsync(tenantId, scopes);
        var client = CreateClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key.Key);
        return client;
    }

    public Task<CreatedApiKey> KeyForAsync(string tenantId, params string[] scopes) =>
        Services.GetRequiredService<ApiKeys>().CreateAsync(tenantId, "test", scopes.Length == 0 ? Scopes.All : scopes, CancellationToken.None);
}
