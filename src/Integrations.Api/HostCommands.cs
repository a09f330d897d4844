using Integrations;
using Integrations.Common;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Security;
using Integrations.Infrastructure.Vault;

namespace Integrations.Api;

/// <summary>
/// Operator commands run against the configured database, without starting the server:
/// <c>migrate</c>, <c>create-api-key --tenant T [--scopes a,b] [--name N]</c>, <c>revoke-api-key ID</c>,
/// <c>check-api-key KEY</c>, <c>rotate-master-key</c> (re-wraps every vault data key, and re-encrypts stored
/// <c>encrypted://</c> references, under the current <c>Integrations:Vault:MasterKey</c>; the old key stays listed
/// under <c>Integrations:Vault:PreviousKeys</c> until it reports nothing left).
/// </summary>
internal static class HostCommands
{
    private static readonly string[] Commands = ["migrate", "create-api-key", "revoke-api-key", "check-api-key", "rotate-master-key"];

    public static bool IsCommand(string arg) => Commands.Contains(arg);

    public static async Task<int> RunAsync(string[] args)
    {
        var builder = Host.CreateApplicationBuilder(args[1..]);
        builder.Logging.ClearProviders().AddSimpleConsole().SetMinimumLevel(LogLevel.Warning);
        builder.Configuration.AddInMemoryCollection([new("Integrations:Database:MigrateOnStart", "false")]);
        try
        {
            builder.Services.AddIntegrations(builder.Configuration);
            using var host = builder.Build();
            var services = host.Services;
            var ct = CancellationToken.None;
            await services.GetRequiredService<MigrationRunner>().RunAsync(ct);
            switch (args[0])
            {
                case "migrate":
                    Console.WriteLine("Migrations are up to date.");
                    return 0;
                case "create-api-key":
                    {
                        var tenant = Option(args, "--tenant") ?? throw new ArgumentException("--tenant is required.");
                        var scopes = (Option(args, "--scopes") ?? string.Join(',', Scopes.Read, Scopes.Write))
                            .Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                        var name = Option(args, "--name") ?? "cli";
                        var created = await services.GetRequiredService<ApiKeys>().CreateAsync(tenant, name, scopes, ct);
                        Console.WriteLine($"Created API key {created.Id} for tenant '{created.TenantId}' with scopes {string.Join(',', created.Scopes)}.");
                        Console.WriteLine("The key is shown once; store it now:");
                        Console.WriteLine(created.Key);
                        return 0;
                    }
                case "revoke-api-key":
                    {
                        if (args.Length < 2 || !Guid.TryParse(args[1], out var id)) throw new ArgumentException("Usage: revoke-api-key <id>");
                        var revoked = await services.GetRequiredService<ApiKeys>().RevokeAsync(id, ct);
                        Console.WriteLine(revoked ? $"Revoked API key {id}." : $"No active API key {id}.");
                        return revoked ? 0 : 1;
                    }
                case "check-api-key":
                    {
                        if (args.Length < 2) throw new ArgumentException("Usage: check-api-key <key>");
                        var caller = await services.GetRequiredService<ApiKeys>().AuthenticateAsync(args[1], ct);
                        Console.WriteLine(caller is null ? "invalid" : $"valid for tenant '{caller.TenantId}'");
                        return caller is null ? 1 : 0;
                    }
                case "rotate-master-key":
                    {
                        var report = await services.GetRequiredService<MasterKeyRotation>().RunAsync(ct);
                        Console.WriteLine(MasterKeyRotation.Describe(report));
                        return report.Complete ? 0 : 1;
                    }
            }
            return 2;
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or Npgsql.NpgsqlException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 1;
        }
    }

    private static string? Option(string[] args, string name)
    {
        var index = Array.IndexOf(args, name);
        return index >= 0 && index + 1 < args.Length ? args[index + 1] : null;
    }
}
