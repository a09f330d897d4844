using Integrations.Common;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Security;
using Integrations.Tests.Support;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Tests.Platform;

/// <summary>
/// API key lookups are cached for a short time; revocation still takes effect on every replica at once (the row's
/// trigger notifies them), and a cached key still needs its secret.
/// </summary>
public sealed class ApiKeyCacheTests(ServiceFixture fixture) : IClassFixture<ServiceFixture>
{
    private ServiceHost Host => fixture.Host;

    private sealed class ManualTime : TimeProvider
    {
        private long _ticks = TimeProvider.System.GetTimestamp();

        public override long GetTimestamp() => Interlocked.Read(ref _ticks);

        public override long TimestampFrequency => TimeProvider.System.TimestampFrequency;

        public void Advance(TimeSpan by) => Interlocked.Add(ref _ticks, (long)(by.TotalSeconds * TimestampFrequency));
    }

    private static async Task<ApiKeys> ListeningKeysAsync(ServiceHost host)
    {
        var notifications = host.Services.GetRequiredService<ChangeNotifications>();
        await WaitUntil(() => Task.FromResult(notifications.IsListening));
        return host.Services.GetRequiredService<ApiKeys>();
    }

    [Fact]
    public async Task A_key_revoked_through_one_replica_is_refused_by_another_that_had_it_cached()
    {
        await using var other = await ServiceHost.StartAsync();
        var tenant = TestEnvironment.NewTenant();
        var created = await Host.Services.GetRequiredService<ApiKeys>().CreateAsync(tenant, "k", [Scopes.Read], CancellationToken.None);
        var keys = await ListeningKeysAsync(other);
        Assert.Equal(tenant, (await keys.AuthenticateAsync(created.Key, CancellationToken.None))?.TenantId); // cached now

        Assert.True(await Host.Services.GetRequiredService<ApiKeys>().RevokeAsync(created.Id, CancellationToken.None));

        await WaitUntil(async () => await keys.AuthenticateAsync(created.Key, CancellationToken.None) is null);
    }

    [Fact]
    public async Task A_key_revoked_by_plain_sql_is_refused_by_a_replica_that_had_it_cached()
    {
        var tenant = TestEnvironment.NewTenant();
        var keys = await ListeningKeysAsync(Host);
        var created = await keys.CreateAsync(tenant, "k", [Scopes.Read], CancellationToken.None);
        Assert.NotNull(await keys.AuthenticateAsync(created.Key, CancellationToken.None));

        await OwnerSql.ExecuteAsync(Host.ConnectionString, "UPDATE api_keys SET revoked_at = now() WHERE id = @Id", new { created.Id });

        await WaitUntil(async () => await keys.AuthenticateAsync(created.Key, CancellationToken.None) is null);
    }

    [Fact]
    public async Task The_replica_that_revokes_refuses_the_key_on_the_very_next_request()
    {
        var tenant = TestEnvironment.NewTenant();
        var keys = await ListeningKeysAsync(Host);
        var created = await keys.CreateAsync(tenant, "k", [Scopes.Read], CancellationToken.None);
        Assert.NotNull(await keys.AuthenticateAsync(created.Key, CancellationToken.None));

        await keys.RevokeAsync(created.Id, CancellationToken.None);

        Assert.Null(await keys.AuthenticateAsync(created.Key, CancellationToken.None));
    }

    [Fact]
    public async Task A_cached_key_still_needs_its_secret()
    {
        var tenant = TestEnvironment.NewTenant();
        var keys = await ListeningKeysAsync(Host);
        var created = await keys.CreateAsync(tenant, "k", [Scopes.Read], CancellationToken.None);
        Assert.NotNull(await keys.AuthenticateAsync(created.Key, CancellationToken.None));

        var tampered = created.Key[..^10] + (created.Key[^10] == 'A' ? 'B' : 'A') + created.Key[^9..];

        Assert.Null(await keys.AuthenticateAsync(tampered, CancellationToken.None));
        Assert.NotNull(await keys.AuthenticateAsync(created.Key, CancellationToken.None));
    }

    [Fact]
    public async Task Without_a_notification_a_cached_key_is_read_again_after_the_cache_time()
    {
        // A database of its own: the trigger is switched off to show what the cache alone does.
        var connectionString = await TestEnvironment.CreateMigratedDatabaseAsync("apikeys");
        var time = new ManualTime();
        await using var host = await ServiceHost.StartAsync(connectionString: connectionString,
            configure: services => services.AddSingleton(sp => new ApiKeys(sp.GetRequiredService<Npgsql.NpgsqlDataSource>(), sp.GetRequiredService<ChangeNotifications>(), sp.GetRequiredService<ApiKeyUsage>(), time, sp.GetRequiredService<OwnerDatabase>())));
        var keys = await ListeningKeysAsync(host);
        var created = await keys.CreateAsync("tenant-a", "k", [Scopes.Read], CancellationToken.None);
        Assert.NotNull(await keys.AuthenticateAsync(created.Key, CancellationToken.None));
        await OwnerSql.ExecuteAsync(connectionString, "ALTER TABLE api_keys DISABLE TRIGGER api_keys_changed");
        await OwnerSql.ExecuteAsync(connectionString, "UPDATE api_keys SET revoked_at = now() WHERE id = @Id", new { created.Id });

        Assert.NotNull(await keys.AuthenticateAsync(created.Key, CancellationToken.None)); // served from the cache
        time.Advance(ApiKeys.CacheFor + TimeSpan.FromSeconds(1));

        Assert.Null(await keys.AuthenticateAsync(created.Key, CancellationToken.None));
    }

    private static async Task WaitUntil(Func<Task<bool>> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "condition not met within 5 s");
            await Task.Delay(10);
        }
    }
}
