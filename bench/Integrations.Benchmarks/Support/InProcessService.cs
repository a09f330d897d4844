using Integrations.Common;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Security;
using MediatR;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Integrations.Benchmarks.Support;

/// <summary>
/// The service as an in-process caller uses it: <c>AddIntegrations(configuration)</c>, then per request a scope
/// whose <see cref="CallerContext"/> is set and <see cref="IMediator.Send"/>.
/// </summary>
public sealed class InProcessService : IAsyncDisposable
{
    private InProcessService(ServiceProvider services) => Services = services;

    public ServiceProvider Services { get; }

    public NpgsqlDataSource DataSource => Services.GetRequiredService<NpgsqlDataSource>();

    public static InProcessService Create(string connectionString, Action<IServiceCollection>? configure = null)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["ConnectionStrings:Integrations"] = connectionString,
            ["Integrations:Database:MigrateOnStart"] = "false",
            ["Integrations:Vault:MasterKey"] = ApiProcess.MasterKey, // the audit trail's MAC key is derived from it
        }).Build();
        var services = new ServiceCollection();
        services.AddSingleton<IConfiguration>(configuration);
        services.AddLogging(b => b.SetMinimumLevel(LogLevel.Warning));
        services.AddIntegrations(configuration);
        configure?.Invoke(services);
        return new InProcessService(services.BuildServiceProvider());
    }

    /// <summary>A new API key of <paramref name="tenantId"/> with <paramref name="scopes"/>, minted by a service of its own that ends at once.</summary>
    public static async Task<string> MintKeyAsync(string connectionString, string tenantId, string name, params string[] scopes)
    {
        await using var service = Create(connectionString);
        return (await service.Services.GetRequiredService<ApiKeys>().CreateAsync(tenantId, name, scopes, CancellationToken.None)).Key;
    }

    public async Task<Result<T>> SendAsync<T>(IRequest<Result<T>> request, Caller caller, CancellationToken ct = default)
    {
        await using var scope = Services.CreateAsyncScope();
        scope.ServiceProvider.GetRequiredService<CallerContext>().Set(caller);
        return await scope.ServiceProvider.GetRequiredService<IMediator>().Send(request, ct);
    }

    public static Caller CallerFor(string tenantId) =>
        new(tenantId, $"bench:{tenantId}", Scopes.All.ToHashSet());

    /// <summary>Creates a database and applies the service's migrations with its own runner.</summary>
    public static async Task<string> CreateMigratedDatabaseAsync(string adminConnectionString, string name)
    {
        await using (var admin = new NpgsqlConnection(adminConnectionString))
        {
            await admin.OpenAsync();
            await using var drop = new NpgsqlCommand($"DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)", admin);
            await drop.ExecuteNonQueryAsync();
            await using var create = new NpgsqlCommand($"CREATE DATABASE \"{name}\"", admin);
            await create.ExecuteNonQueryAsync();
        }
        var connectionString = new NpgsqlConnectionStringBuilder(adminConnectionString) { Database = name }.ConnectionString;
        await using var dataSource = NpgsqlDataSource.Create(connectionString);
        await new MigrationRunner(dataSource, NullLogger<MigrationRunner>.Instance).RunAsync(CancellationToken.None);
        return connectionString;
    }

    public ValueTask DisposeAsync() => Services.DisposeAsync();
}
