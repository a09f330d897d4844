using Dapper;
using Integrations.Common;
using Integrations.Infrastructure.Datasources;
using Integrations.Infrastructure.Workers;
using MediatR;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Integrations.Features.Datasources;

/// <summary>
/// On start-up, every <see cref="RetryInterval"/> while some are left, and when woken (<see cref="CheckSoon"/>), sends datasources.recheck_query for every
/// stored template that has not passed the gateway's current rules (<see cref="FunctionAllowList.RulesVersion"/>),
/// as a system caller of its tenant: those that fail are disabled with <c>datasource.query.disabled</c>; until a
/// template passes, it cannot run (<see cref="QueryCall"/>: <c>template_unchecked</c>).
/// </summary>
internal sealed class StoredTemplateCheck(
    IServiceScopeFactory scopes, NpgsqlDataSource dataSource, WorkerRegistry workers, ILogger<StoredTemplateCheck> logger)
    : BackgroundService
{
    public const string Actor = "system:stored-template-check";
    public const string WorkerName = "datasources.stored_template_check";
    public static readonly TimeSpan RetryInterval = TimeSpan.FromMinutes(5);

    private readonly SemaphoreSlim _wake = new(0);

    /// <summary>Runs a pass now (after a change that left templates unchecked has committed), not only at start-up.</summary>
    public void CheckSoon()
    {
        if (_wake.CurrentCount == 0) _wake.Release();
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        workers.Declare(WorkerName, "Checks stored SQL templates against the gateway's current rules; disables those that fail.", null);
        while (!stoppingToken.IsCancellationRequested)
        {
            var left = 1; // a failed pass leaves them all to check again
            await workers.RunPassAsync(WorkerName, async ct =>
            {
                left = await RunOnceAsync(ct);
                return $"{left} templates left unchecked";
            }, RetryInterval, stoppingToken);
            if (left == 0) workers.SetNextRun(WorkerName, null);
            // Some left: again after RetryInterval, or sooner when woken; none left: only when woken.
            if (left > 0) await _wake.WaitAsync(RetryInterval, stoppingToken);
            else await _wake.WaitAsync(stoppingToken);
        }
    }

    private sealed record Unchecked(string TenantId, Guid Id, Guid DatasourceId, string Name);

    /// <summary>One pass (across tenants, through migration 0017's function); answers how many templates are still unchecked after it.</summary>
    public async Task<int> RunOnceAsync(CancellationToken ct)
    {
        List<Unchecked> due;
        await using (var connection = await dataSource.OpenConnectionAsync(ct))
        {
            due = (await connection.QueryAsync<Unchecked>(new CommandDefinition(
                "SELECT tenant_id, id, datasource_id, name FROM datasource_queries_to_recheck(@Version, 1000)",
                new { Version = FunctionAllowList.RulesVersion }, cancellationToken: ct))).AsList();
        }
        var left = 0;
        foreach (var template in due)
        {
            await using var scope = scopes.CreateAsyncScope();
            scope.ServiceProvider.GetRequiredService<CallerContext>()
                .Set(new Caller(template.TenantId, Actor, new HashSet<string> { Scopes.Write }, IsSystem: true));
            var result = await scope.ServiceProvider.GetRequiredService<IMediator>().Send(new RecheckQuery.Command(template.DatasourceId, template.Name), ct);
            if (!result.IsSuccess)
            {
                left++;
                logger.LogWarning("Stored template {QueryId} (tenant {TenantId}) could not be checked: {Code}", template.Id, template.TenantId, result.Error!.Code);
            }
            else if (!result.Value.Passed)
            {
                logger.LogWarning("Stored template {QueryId} (tenant {TenantId}) was disabled: {Reason}", template.Id, template.TenantId, result.Value.DisabledReason);
            }
        }
        return left;
    }
}
