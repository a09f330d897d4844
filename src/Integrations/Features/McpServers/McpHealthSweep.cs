using Dapper;
using Integrations.Common;
using Integrations.Infrastructure.Mcp;
using Integrations.Infrastructure.Workers;
using MediatR;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Integrations.Features.McpServers;

/// <summary>
/// Every <c>Integrations:Mcp:HealthSweepInterval</c> (zero turns it off) sends mcp_servers.health for each live,
/// not disabled server whose last check is older than the interval or that is pending (just enabled again), as a
/// system caller of its tenant, through the same pipeline (credential grant, access log, audit) as a user's check.
/// </summary>
internal sealed class McpHealthSweep(
    IServiceScopeFactory scopes, NpgsqlDataSource dataSource, McpOptions options, WorkerRegistry workers, ILogger<McpHealthSweep> logger)
    : BackgroundService
{
    public const string Actor = "system:mcp-health-sweep";
    public const string WorkerName = "mcp_servers.health_sweep";

    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        workers.RunEveryAsync(WorkerName, "Checks the health of every live MCP server whose last check is older than the interval.",
            options.HealthSweepInterval, async ct => $"{await RunOnceAsync(ct)} servers checked", stoppingToken);

    private sealed record Due(string TenantId, Guid Id);

    /// <summary>One pass (across tenants, through a function of migration 0015) over the servers due for a check; answers how many were checked.</summary>
    public async Task<int> RunOnceAsync(CancellationToken ct)
    {
        List<Due> due;
        await using (var connection = await dataSource.OpenConnectionAsync(ct))
        {
            due = (await connection.QueryAsync<Due>(new CommandDefinition(
                "SELECT tenant_id, id FROM mcp_servers_due_for_health(@Interval, 1000)",
                new { Interval = options.HealthSweepInterval }, cancellationToken: ct))).AsList();
        }
        foreach (var server in due)
        {
            await using var scope = scopes.CreateAsyncScope();
            scope.ServiceProvider.GetRequiredService<CallerContext>()
                .Set(new Caller(server.TenantId, Actor, new HashSet<string> { Scopes.Write }, IsSystem: true));
            var result = await scope.ServiceProvider.GetRequiredService<IMediator>().Send(new CheckMcpServerHealth.Command(server.Id), ct);
            if (result.IsSuccess)
            {
                logger.LogInformation("Health of MCP server {ServerId} (tenant {TenantId}): {Status}", server.Id, server.TenantId, result.Value.Status);
            }
            else
            {
                logger.LogWarning("Health check of MCP server {ServerId} (tenant {TenantId}) did not run: {Code}", server.Id, server.TenantId, result.Error!.Code);
            }
        }
        return due.Count;
    }
}
