using Dapper;
using Integrations.Common;
using Integrations.Infrastructure.Workers;
using MediatR;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Integrations.Features.Integrations;

/// <summary>
/// Every <c>Integrations:Health:SweepInterval</c> (default 15 minutes; zero turns it off), sends
/// integrations.check_health for each enabled integration of every tenant, as a system caller of that tenant,
/// through the same pipeline (credential grant, access log, audit) as a user's check.
/// </summary>
internal sealed class IntegrationHealthSweep(
    IServiceScopeFactory scopes, NpgsqlDataSource dataSource, HealthCheckSettings settings, WorkerRegistry workers,
    ILogger<IntegrationHealthSweep> logger)
    : BackgroundService
{
    public const string Actor = "system:health-sweep";
    public const string WorkerName = "integrations.health_sweep";

    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        workers.RunEveryAsync(WorkerName, "Checks the health of every enabled LLM integration of every tenant.", settings.SweepInterval,
            async ct => $"{await RunOnceAsync(ct)} integrations checked", stoppingToken);

    private sealed record Enabled(string TenantId, Guid Id);

    /// <summary>One pass over the enabled integrations (across tenants, through a function of migration 0015); answers how many were checked.</summary>
    public async Task<int> RunOnceAsync(CancellationToken ct)
    {
        var checkedCount = 0;
        var after = Guid.Empty;
        while (true)
        {
            List<Enabled> batch;
            await using (var connection = await dataSource.OpenConnectionAsync(ct))
            {
                batch = (await connection.QueryAsync<Enabled>(new CommandDefinition(
                    "SELECT tenant_id, id FROM enabled_integrations_after(@After, 100)", new { After = after }, cancellationToken: ct))).AsList();
            }
            if (batch.Count == 0) return checkedCount;
            after = batch[^1].Id;
            foreach (var integration in batch)
            {
                await using var scope = scopes.CreateAsyncScope();
                scope.ServiceProvider.GetRequiredService<CallerContext>()
                    .Set(new Caller(integration.TenantId, Actor, new HashSet<string> { Scopes.Write }, IsSystem: true));
                var result = await scope.ServiceProvider.GetRequiredService<IMediator>().Send(new CheckIntegrationHealth.Command(integration.Id), ct);
                if (result.IsSuccess)
                {
                    logger.LogInformation("Health of integration {IntegrationId} (tenant {TenantId}): {Health}",
                        integration.Id, integration.TenantId, result.Value.Health);
                }
                else
                {
                    logger.LogWarning("Health check of integration {IntegrationId} (tenant {TenantId}) did not run: {Code}",
                        integration.Id, integration.TenantId, result.Error!.Code);
                }
                checkedCount++;
            }
        }
    }
}
