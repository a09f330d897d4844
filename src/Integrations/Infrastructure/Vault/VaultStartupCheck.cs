using Microsoft.Extensions.Hosting;

namespace Integrations.Infrastructure.Vault;

/// <summary>Reads the master keys at start-up, so a missing or malformed key stops the host with its message instead of failing the first request.</summary>
internal sealed class VaultStartupCheck(MasterKeys keys) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        _ = keys.Current;
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
