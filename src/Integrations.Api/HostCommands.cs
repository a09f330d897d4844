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

    public static bool IsCommand(string arg) => Commands.Contains(arg) || IsHelp(arg);

    private static bool IsHelp(string arg) => arg is "--help" or "-h" or "help";

    private static readonly Dictionary<string, string> Usage = new()
    {
        ["migrate"] = "migrate                      apply the pending migrations (the owner connection string) and say how many",
        ["create-api-key"] = "create-api-key --tenant T [--scopes a,b] [--name N]\n                             create a key (default scopes integrations:read,integrations:write); shown once, last line",
        ["revoke-api-key"] = "revoke-api-key ID            revoke a key; every replica refuses it from the next request",
        ["check-api-key"] = "check-api-key KEY            say whether a key is valid, and for which tenant",
        ["rotate-master-key"] = "rotate-master-key            re-wrap vault data keys and encrypted:// references under the current master key",
    };

    /// <summary>The host's usage, or one command's; printed without touching the database.</summary>
    private static int PrintHelp(string? command)
    {
        if (command is not null && Usage.TryGetValue(command, out var one))
        {
            Console.WriteLine($"usage: dotnet Integrations.Api.dll {one}");
            return 0;
        }
        Console.WriteLine("usage: dotnet Integrations.Api.dll [--urls URL]     serve the API (configuration: README.md)");
        Console.WriteLine("       dotnet Integrations.Api.dll <command> [options]");
        Console.WriteLine();
        Console.WriteLine("commands (same configuration as the server; --help after one explains it):");
        foreach (var line in Usage.Values) Console.WriteLine($"  {line}");
        return 0;
    }

    public static async Task<int> RunAsync(string[] args)
    {
        if (IsHelp(args[0])) return PrintHelp(null);
        if (args.Skip(1).Any(IsHelp)) return PrintHelp(args[0]);
        var builder = Host.CreateApplicationBuilder(args[1..]);
        builder.Logging.ClearProviders().AddSimpleConsole().SetMinimumLevel(LogLevel.Warning);
        builder.Configuration.AddInMemoryCollection([new("Integrations:Database:MigrateOnStart", "false")]);
        try
        {
            builder.Services.AddIntegrations(builder.Configuration);
            using var host = builder.Build();
            var services = host.Services;
            var ct = CancellationToken.None;
            var applied = await services.GetRequiredService<MigrationRunner>().RunAsync(ct);
            switch (args[0])
            {
                case "migrate":
                    Console.WriteLine(applied == 0 ? "Migrations are up to date; none applied." : $"Applied {applied} migration(s); the database is up to date.");
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
