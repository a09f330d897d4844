using Integrations.Common;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using MediatR;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Integrations.Tests.Support;

/// <summary>
/// One migrated database per test run, in the PostgreSQL that ./build.sh test starts (INTEGRATIONS_TEST_DB).
/// Tests isolate themselves by tenant, so classes run in parallel against it.
/// </summary>
public static class TestEnvironment
{
    private static readonly Lazy<Task<string>> Database = new(() => CreateMigratedDatabaseAsync("it"));

    public static Task<string> ConnectionStringAsync() => Database.Value;

    public static string AdminConnectionString =>
        Environment.GetEnvironmentVariable("INTEGRATIONS_TEST_DB")
        ?? throw new InvalidOperationException(
            "INTEGRATIONS_TEST_DB is not set: run the tests with ./build.sh test, which starts a throwaway PostgreSQL.");

    public static async Task<string> CreateDatabaseAsync(string prefix)
    {
        await ServiceRole.Value;
        var name = $"{prefix}_{Guid.NewGuid():N}"[..30];
        await using (var admin = new NpgsqlConnection(AdminConnectionString))
        {
            await admin.OpenAsync();
            await using var create = new NpgsqlCommand($"CREATE DATABASE \"{name}\"", admin);
            await create.ExecuteNonQueryAsync();
        }
        return new NpgsqlConnectionStringBuilder(AdminConnectionString) { Database = name }.ConnectionString;
    }

    /// <summary>The role the service logs in as (as eng/service-role.sql sets it up): a member of integrations_app, nothing more.</summary>
    public const string ServiceRoleName = "integrations_service";

    private const string ServiceRolePassword = "integrations-service-test";

    private static readonly Lazy<Task> ServiceRole = new(CreateServiceRoleAsync);

    /// <summary><paramref name="connectionString"/>'s database, as the service's login role.</summary>
    public static string ServiceConnectionString(string connectionString) =>
        new NpgsqlConnectionStringBuilder(connectionString) { Username = ServiceRoleName, Password = ServiceRolePassword }.ConnectionString;

    private static async Task CreateServiceRoleAsync()
    {
        await using var admin = new NpgsqlConnection(AdminConnectionString);
        await admin.OpenAsync();
        await using var create = new NpgsqlCommand($$"""
            DO $$
            BEGIN
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'integrations_app') THEN
                    CREATE ROLE integrations_app NOLOGIN;
                END IF;
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{{ServiceRoleName}}') THEN
                    CREATE ROLE {{ServiceRoleName}} LOGIN;
                END IF;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
            END $$;
            ALTER ROLE {{ServiceRoleName}} LOGIN PASSWORD '{{ServiceRolePassword}}';
            GRANT integrations_app TO {{ServiceRoleName}};
            """, admin);
        await create.ExecuteNonQueryAsync();
    }

    public static async Task<string> CreateMigratedDatabaseAsync(string prefix)
    {
        var connectionString = await CreateDatabaseAsync(prefix);
        await using var dataSource = NpgsqlDataSource.Create(connectionString);
        await new MigrationRunner(dataSource, NullLogger<MigrationRunner>.Instance).RunAsync(CancellationToken.None);
        return connectionString;
    }

    /// <param name="connectionString">The database as its owner (the tests' superuser): the service gets it for migrations
    /// and operator commands, and logs in for requests as <see cref="ServiceRoleName"/>.</param>
    public static IConfiguration Configuration(string connectionString, IDictionary<string, string?>? extra = null)
    {
        var settings = new Dictionary<string, string?>
        {
            ["ConnectionStrings:Integrations"] = ServiceConnectionString(connectionString),
            ["ConnectionStrings:IntegrationsOwner"] = connectionString,
            ["Integrations:Audit:AnchorFile"] = Path.Combine(Path.GetTempPath(), "integrations-tests", $"anchors-{Guid.NewGuid():N}.jsonl"),
            ["Integrations:Audit:AnchorInterval"] = "00:00:00",
            ["Integrations:Database:MigrateOnStart"] = "false",
            ["Integrations:Network:EgressAllow:0"] = "127.0.0.1",
            ["Integrations:Network:EgressAllow:1"] = "localhost",
            ["Integrations:Vault:MasterKey"] = MasterKey,
            ["Integrations:Health:SweepInterval"] = "00:00:00",
            ["Integrations:Spend:BudgetAlertInterval"] = "00:00:00",
            ["Integrations:Spend:CostAnomaly:Interval"] = "00:00:00",
            ["Integrations:Spend:RunHoursBackfillInterval"] = "00:00:00",
            // Each host its own outcome journal, and no recovery pass over the shared database unless a test runs one.
            ["Integrations:DataDirectory"] = Path.Combine(Path.GetTempPath(), "integrations-tests", Guid.NewGuid().ToString("N")),
            ["Integrations:Governance:OutcomeRecoveryInterval"] = "00:00:00",
        };
        foreach (var (key, value) in extra ?? new Dictionary<string, string?>()) settings[key] = value;
        return new ConfigurationBuilder().AddInMemoryCollection(settings).Build();
    }

    /// <summary>The fixed master key every test host uses (base64 of bytes 1..32).</summary>
    public static readonly string MasterKey = Convert.ToBase64String(Enumerable.Range(1, 32).Select(i => (byte)i).ToArray());

    /// <summary>The checkout the tests run from (the directory holding Integrations.sln), for tests of its files and scripts.</summary>
    public static string RepositoryRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Integrations.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("Integrations.sln not found above the test output.");
    }

    public static string NewTenant() => $"t-{Guid.NewGuid():N}";

    public static Caller CallerFor(string tenantId, params string[] scopes) =>
        new(tenantId, $"test:{tenantId}", (scopes.Length == 0 ? Scopes.All : scopes).ToHashSet());
}

/// <summary>The service as an in-process caller sees it: AddIntegrations and IMediator, one scope per request.</summary>
public sealed class ServiceHost : IAsyncDisposable
{
    private ServiceHost(ServiceProvider services, string connectionString)
    {
        Services = services;
        ConnectionString = connectionString;
    }

    public ServiceProvider Services { get; }

    public string ConnectionString { get; }

    public NpgsqlDataSource DataSource => Services.GetRequiredService<NpgsqlDataSource>();

    public static async Task<ServiceHost> StartAsync(
        IDictionary<string, string?>? settings = null, Action<IServiceCollection>? configure = null, string? connectionString = null)
    {
        connectionString ??= await TestEnvironment.ConnectionStringAsync();
        var services = new ServiceCollection();
        var configuration = TestEnvironment.Configuration(connectionString, settings);
        services.AddSingleton(configuration);
        services.AddLogging(b => b.SetMinimumLevel(LogLevel.Warning));
        services.AddIntegrations(configuration);
        configure?.Invoke(services);
        return new ServiceHost(services.BuildServiceProvider(new ServiceProviderOptions { ValidateScopes = true }), connectionString);
    }

    /// <summary>Sends a request through the real pipeline as <paramref name="caller"/> (or with no caller context at all).</summary>
    public async Task<Result<T>> SendAsync<T>(IRequest<Result<T>> request, Caller? caller)
    {
        await using var scope = Services.CreateAsyncScope();
        if (caller is not null) scope.ServiceProvider.GetRequiredService<CallerContext>().Set(caller);
        return await scope.ServiceProvider.GetRequiredService<IMediator>().Send(request);
    }

    public Task<Result<T>> SendAsync<T>(IRequest<Result<T>> request, string tenantId, params string[] scopes) =>
        SendAsync(request, TestEnvironment.CallerFor(tenantId, scopes));

    /// <summary>Waits (at most 5 s) until this host hears change notifications: only then do its caches keep copies.</summary>
    public async Task WaitUntilListeningAsync()
    {
        var notifications = Services.GetRequiredService<ChangeNotifications>();
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (!notifications.IsListening)
        {
            Assert.True(DateTime.UtcNow < deadline, "the change listener did not start within 5 s");
            await Task.Delay(10);
        }
    }

    /// <summary>
    /// A connection of the service's pool as a request uses it: the app role, <paramref name="tenantId"/> pinned for the
    /// session (the service pins per transaction; this is for tests that hand a connection to a component).
    /// </summary>
    public async Task<NpgsqlConnection> OpenTenantConnectionAsync(string tenantId)
    {
        var connection = await DataSource.OpenConnectionAsync();
        await using var pin = new NpgsqlCommand("SELECT set_config('role', 'integrations_app', false), set_config('app.tenant_id', $1, false)", connection);
        pin.Parameters.Add(new NpgsqlParameter { Value = tenantId });
        await pin.ExecuteNonQueryAsync();
        return connection;
    }

    /// <summary>
    /// Signs audit events made outside a mediator request (a test calling <c>AuditTrail.AddTo</c> or making an
    /// <c>AuditWrite</c> itself) with this host's audit key, until disposed, as the pipeline does for every request.
    /// </summary>
    public IDisposable SigningAuditEvents() => AuditKeys.Use(Services.GetRequiredService<AuditKeys>());

    public ValueTask DisposeAsync() => Services.DisposeAsync();
}
