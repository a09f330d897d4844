using Microsoft.Extensions.Hosting;

namespace Integrations.Infrastructure.Database;

/// <summary>Brings the schema up to date before the host serves anything.</summary>
internal sealed class MigrateOnStart(MigrationRunner runner) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken) => runner.RunAsync(cancellationToken);

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
