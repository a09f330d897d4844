using Integrations.Features.Credentials;
using Integrations.Features.Datasources;
using Integrations.Tests.Support;

namespace Integrations.Tests.Datasources;

/// <summary>The service (real mediator, vault and PostgreSQL) plus a seeded target database reached with a least-privilege role.</summary>
public sealed class DatasourceFixture : IAsyncLifetime
{
    public ServiceHost Host { get; private set; } = null!;

    public TargetDatabase Target { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Target = await TargetDatabase.CreateAsync();
        Host = await ServiceHost.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await Host.DisposeAsync();
        await Target.DisposeAsync();
    }

    /// <summary>Stores the password in the vault as a basic_auth credential and answers with it (its reference).</summary>
    public async Task<Credential.Response> StoreAsync(string tenant, string password, string username = "reader")
    {
        var stored = await Host.SendAsync(new StoreCredential.Command($"db-{Guid.NewGuid():N}", "basic_auth", Username: username, Password: password), tenant);
        Assert.True(stored.IsSuccess, stored.Error?.Detail);
        return stored.Value;
    }

    /// <summary>Registers the seeded database for <paramref name="tenant"/> with a vault reference to the right (or the given) password.</summary>
    public async Task<Datasource.Response> RegisterAsync(string tenant, string name = "warehouse", int? rowLimit = null, int? timeoutMs = null,
        string? password = null, TargetDatabase? target = null)
    {
        target ??= Target;
        var credential = await StoreAsync(tenant, password ?? target.Password, target.Role);
        var result = await Host.SendAsync(new RegisterDatasource.Command(name, target.Host, target.Database, target.Role, credential.Reference,
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
