using Integrations.Features.Datasources;
using Integrations.Infrastructure.Datasources;
using Integrations.Tests.Support;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Tests.Datasources;

/// <summary>The service (real mediator, real PostgreSQL) plus a seeded target database and the password seam.</summary>
public sealed class DatasourceFixture : IAsyncLifetime
{
    public ServiceHost Host { get; private set; } = null!;

    public TargetDatabase Target { get; private set; } = null!;

    public TestDatasourcePasswords Passwords { get; } = new();

    public async Task InitializeAsync()
    {
        Target = await TargetDatabase.CreateAsync();
        Host = await ServiceHost.StartAsync(configure: s => s.AddSingleton<IDatasourcePasswords>(Passwords));
    }

    public async Task DisposeAsync()
    {
        await Host.DisposeAsync();
        await Target.DisposeAsync();
    }

    /// <summary>Registers the seeded database for <paramref name="tenant"/> with a reference to the right password.</summary>
    public async Task<Datasource.Response> RegisterAsync(string tenant, string name = "warehouse", int? rowLimit = null, int? timeoutMs = null,
        string? password = null, TargetDatabase? target = null)
    {
        target ??= Target;
        var reference = Passwords.Add(tenant, password ?? target.Password);
        var result = await Host.SendAsync(new RegisterDatasource.Command(name, target.Host, target.Database, target.Role, reference,
            Port: target.Port, TlsMode: "disable", RowLimit: rowLimit, StatementTimeoutMs: timeoutMs), tenant);
        Assert.True(result.IsSuccess, result.Error?.Detail);
        return result.Value;
    }

    public async Task<Datasource.QueryResponse> DefineAsync(string tenant, Guid datasourceId, string name, string sql,
        IReadOnlyList<Datasource.Parameter>? parameters = null, int? rowLimit = null, int? timeoutMs = null, int? rateLimit = null)
    {
        var result = await Host.SendAsync(new DefineQuery.Command(datasourceId, name, sql, parameters, RowLimit: rowLimit,
            TimeoutMs: timeoutMs, RateLimitPerMinute: rateLimit), tenant);
        Assert.True(result.IsSuccess, result.Error?.Detail + " " + string.Join("; ", result.Error?.FieldErrors?.SelectMany(f => f.Value) ?? []));
        return result.Value;
    }
}
