namespace Integrations.Tests.Support;

public sealed class ServiceFixture : IAsyncLifetime
{
    public ServiceHost Host { get; private set; } = null!;

    public async Task InitializeAsync() => Host = await ServiceHost.StartAsync();

    public async Task DisposeAsync() => await Host.DisposeAsync();
}

public sealed class ApiFixture : IAsyncLifetime
{
    public ApiFactory Factory { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Factory = await ApiFactory.StartAsync();
        _ = Factory.Server; // start the host (runs its hosted services) before the first test
    }

    public async Task DisposeAsync() => await Factory.DisposeAsync();
}
