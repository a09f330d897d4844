using Microsoft.Extensions.Hosting;

namespace Integrations.Infrastructure.Vault;

/// <summary>Reads the master keys and the provider's current key at start-up (without calling KMS), so a missing or malformed key stops the host with its message instead of failing the first request.</summary>
internal sealed class VaultStartupCheck(MasterKeys keys, VaultCrypto crypto) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        _ = keys.Current;
        _ = crypto.CurrentKeyId; // the configured provider exists and names a key
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
