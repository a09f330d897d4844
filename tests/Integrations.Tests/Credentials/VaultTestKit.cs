using System.Text;
using Integrations.Common;
using Integrations.Features.Credentials;
using Integrations.Features.Integrations;
using Integrations.Infrastructure.Vault;
using Integrations.Tests.Support;
using MediatR;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Tests.Credentials;

/// <summary>A request that needs a credential and answers with what its handler received: the pipeline's view, for tests only.</summary>
public sealed record RevealForTest(CredentialAccessor CredentialAccessor, string? CredentialRef = null) : IOperation<string>, INeedsCredential
{
    public static string Operation => "test.reveal";
    public static string Scope => Scopes.Read;
}

internal sealed class RevealForTestHandler(CredentialContext credentials, CallerContext caller) : IRequestHandler<RevealForTest, Result<string>>
{
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, int> RunsByTenant = new();

    public static int Runs(string tenant) => RunsByTenant.GetValueOrDefault(tenant);

    public Task<Result<string>> Handle(RevealForTest request, CancellationToken ct)
    {
        RunsByTenant.AddOrUpdate(caller.TenantId, 1, (_, n) => n + 1);
        var c = credentials.Current;
        var shown = c is null ? "(none)"
            : c.Type == CredentialTypes.BasicAuth ? $"{c.Username}:{c.Password}"
            : c.Type == CredentialTypes.Custom ? string.Join(",", c.Fields.OrderBy(f => f.Key).Select(f => $"{f.Key}={f.Value}"))
            : c.Value!;
        return Task.FromResult<Result<string>>(shown);
    }
}

public sealed class VaultFixture : IAsyncLifetime
{
    public ServiceHost Host { get; private set; } = null!;

    public async Task InitializeAsync() => Host = await VaultTestKit.StartHostAsync();

    public async Task DisposeAsync() => await Host.DisposeAsync();
}

public static class VaultTestKit
{
    public static Task<ServiceHost> StartHostAsync(IDictionary<string, string?>? settings = null) =>
        ServiceHost.StartAsync(settings, s => s.AddTransient<IRequestHandler<RevealForTest, Result<string>>, RevealForTestHandler>());

    public static async Task<Credential.Response> StoreAsync(this ServiceHost host, string tenant, string secret, string name = "key")
    {
        var result = await host.SendAsync(new StoreCredential.Command(name, "api_key", Secret: secret), tenant);
        Assert.True(result.IsSuccess, result.Error?.Detail);
        return result.Value;
    }

    public static async Task<Integration.Response> IntegrationAsync(this ServiceHost host, string tenant, string? credentialRef, string name = "llm",
        string provider = "openai_compatible", string baseUrl = "https://llm.example.com/v1")
    {
        var result = await host.SendAsync(new CreateIntegration.Command(name, provider, BaseUrl: baseUrl, CredentialRef: credentialRef), tenant);
        Assert.True(result.IsSuccess, result.Error?.Detail);
        return result.Value;
    }

    public static Task<Result<string>> RevealAsync(this ServiceHost host, string tenant, Guid integrationId, string? reference = null) =>
        host.SendAsync(new RevealForTest(new CredentialAccessor(CredentialAccessor.Integration, integrationId), reference), tenant);

    public static async Task<List<(string Outcome, string Reason, string Reference)>> AccessLogAsync(string connectionString, string tenant) =>
        (await OwnerSql.QueryAsync<(string, string, string)>(connectionString,
            "SELECT outcome, reason, reference FROM credential_access_log WHERE tenant_id = @tenant ORDER BY id", new { tenant })).ToList();

    /// <summary>True when <paramref name="secret"/> occurs in any text or byte column of any row the tenant has in the database.</summary>
    public static async Task<bool> DatabaseContainsAsync(string connectionString, string tenant, string secret)
    {
        string[] tables = ["credentials", "credential_grants", "credential_access_log", "audit_events", "cus_integrations", "incidents"];
        foreach (var table in tables)
        {
            var texts = await OwnerSql.QueryAsync<string>(connectionString, $"SELECT t::text FROM {table} t WHERE tenant_id = @tenant", new { tenant });
            if (texts.Any(t => t.Contains(secret, StringComparison.Ordinal))) return true;
        }
        var needle = Encoding.UTF8.GetBytes(secret);
        var blobs = await OwnerSql.QueryAsync<byte[]>(connectionString, """
            SELECT ciphertext FROM credentials WHERE tenant_id = @tenant UNION ALL SELECT wrapped_key FROM credentials WHERE tenant_id = @tenant
            UNION ALL SELECT nonce FROM credentials WHERE tenant_id = @tenant UNION ALL SELECT tag FROM credentials WHERE tenant_id = @tenant
            """, new { tenant });
        return blobs.Any(b => b.AsSpan().IndexOf(needle) >= 0);
    }
}
