using Dapper;
using FluentValidation;
using Integrations.Common;
using Integrations.Features.Connectors;
using Integrations.Features.Credentials;
using Integrations.Features.Datasources;
using Integrations.Features.Incidents;
using Integrations.Features.Integrations;
using Integrations.Features.LlmGateway;
using Integrations.Features.McpGateway;
using Integrations.Features.McpServers;
using Integrations.Features.Notifications;
using Integrations.Features.Policies;
using Integrations.Features.Telemetry;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Network;
using Integrations.Infrastructure.Security;
using Integrations.Infrastructure.Workers;
using Integrations.Pipeline;
using Integrations.Pipeline.Governance;
using MediatR;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Integrations;

public static class IntegrationsServiceCollection
{
    /// <summary>
    /// Everything an in-process caller needs to send commands through the same pipeline as HTTP:
    /// the mediator, its behaviors (outermost first), the handlers and validators of every slice,
    /// PostgreSQL, the audit trail, and the start-up migration run.
    /// </summary>
    public static IServiceCollection AddIntegrations(this IServiceCollection services, IConfiguration configuration)
    {
        DapperSettings.Apply();
        // Self-sufficient for an in-process host built from a bare ServiceCollection (both are no-ops when already added).
        services.AddLogging();
        services.AddOptions();

        var connectionString = configuration.GetConnectionString("Integrations");
        if (string.IsNullOrWhiteSpace(connectionString))
        {
            throw new InvalidOperationException(
                "ConnectionStrings:Integrations is not set. Use ./build.sh run (it starts a local PostgreSQL) " +
                "or set ConnectionStrings__Integrations.");
        }
        services.TryAddSingleton(_ => CreateDataSource(connectionString));
        var ownerConnectionString = configuration.GetConnectionString(OwnerDatabase.ConnectionStringName);
        services.TryAddSingleton(sp => string.IsNullOrWhiteSpace(ownerConnectionString)
            ? new OwnerDatabase(sp.GetRequiredService<NpgsqlDataSource>(), owned: false)
            : new OwnerDatabase(CreateDataSource(ownerConnectionString, "integrations-owner"), owned: true));
        var batchesInFlight = configuration.GetValue("Integrations:Database:BatchesInFlightPerTenant", 1);
        if (batchesInFlight is < 1 or > 8)
        {
            throw new InvalidOperationException($"Integrations:Database:BatchesInFlightPerTenant must be between 1 and 8, not {batchesInFlight}.");
        }
        services.TryAddSingleton(sp => new TenantBatches(CreateDataSource(TenantBatches.ConnectionString(connectionString), "integrations-batches"), batchesInFlight,
            sp.GetRequiredService<ILogger<TenantBatches>>()));

        services.AddSingleton(EgressAllowList.FromConfiguration(configuration));
        services.AddSingleton<SsrfGuard>();
        services.AddSingleton(sp => new MigrationRunner(sp.GetRequiredService<OwnerDatabase>().DataSource, sp.GetRequiredService<ILogger<MigrationRunner>>()));
        services.AddAuditTrail(configuration);
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<WorkerRegistry>();
        services.AddSingleton<ExpiredRowsPruning>();
        services.AddHostedService(sp => sp.GetRequiredService<ExpiredRowsPruning>());
        services.AddSingleton<ApiKeyUsage>();
        services.AddHostedService(sp => sp.GetRequiredService<ApiKeyUsage>());
        services.AddSingleton<ApiKeys>();
        if (configuration.GetValue("Integrations:Database:MigrateOnStart", true))
        {
            services.AddHostedService<MigrateOnStart>();
        }

        services.AddSingleton<ChangeNotifications>();
        services.AddScoped<CallerContext>();
        services.AddScoped<TenantSession>();
        services.AddGovernedCalls();

        // Each feature area registers what it brings, next to its routes (Features/<Area>/<Area>Module.cs).
        CredentialsModule.AddServices(services, configuration);
        IntegrationsModule.AddServices(services, configuration);
        McpServersModule.AddServices(services, configuration);
        McpGatewayModule.AddServices(services);
        DatasourcesModule.AddServices(services, configuration);
        PoliciesModule.AddServices(services);
        IncidentsModule.AddServices(services);
        LlmGatewayModule.AddServices(services, configuration);
        TelemetryModule.AddServices(services);
        ConnectorsModule.AddServices(services);
        NotificationsModule.AddServices(services);

        services.AddScoped<ServiceFactory>(sp => sp.GetService!);
        services.AddScoped<IMediator, Mediator>();
        services.AddTransient(typeof(IPipelineBehavior<,>), typeof(AuditKeysBehavior<,>));
        services.AddTransient(typeof(IPipelineBehavior<,>), typeof(TracingBehavior<,>));
        services.AddTransient(typeof(IPipelineBehavior<,>), typeof(AuthorizationBehavior<,>));
        services.AddTransient(typeof(IPipelineBehavior<,>), typeof(ValidationBehavior<,>));
        services.AddTransient(typeof(IPipelineBehavior<,>), typeof(AuditBehavior<,>));
        services.AddTransient(typeof(IPipelineBehavior<,>), typeof(GovernedCallBehavior<,>));
        services.AddTransient(typeof(IPipelineBehavior<,>), typeof(CredentialBehavior<,>)); // innermost: secrets only once everything else allowed the request

        var assembly = typeof(IntegrationsServiceCollection).Assembly;
        // Scoped: a validator may read the request's CallerContext.
        services.AddValidatorsFromAssembly(assembly, ServiceLifetime.Scoped, includeInternalTypes: true);
        foreach (var type in assembly.GetTypes().Where(t => t is { IsClass: true, IsAbstract: false, IsGenericTypeDefinition: false }))
        {
            foreach (var contract in type.GetInterfaces().Where(i => i.IsGenericType && i.GetGenericTypeDefinition() == typeof(IRequestHandler<,>)))
            {
                services.AddTransient(contract, type);
            }
        }
        return services;
    }

    /// <summary>Statements each physical connection keeps prepared unless the connection string sets <c>Max Auto Prepare</c>.</summary>
    internal const int DefaultMaxAutoPrepare = 64;

    // Every request runs the same few statements; parsing and planning them again each time was half of
    // PostgreSQL's CPU per audited write (bench/README.md, benchmark 2). Npgsql prepares a statement on a
    // connection once it has run there a few times. `Max Auto Prepare=0` in the connection string turns this
    // off, e.g. behind a pooler in transaction mode that cannot keep prepared statements.
    internal static NpgsqlDataSource CreateDataSource(string connectionString, string name = "integrations")
    {
        var builder = new NpgsqlDataSourceBuilder(connectionString) { Name = name };
        // The generic builder keeps the keys as written (Npgsql's own answers true for every keyword it knows).
        var given = new System.Data.Common.DbConnectionStringBuilder { ConnectionString = connectionString };
        var setsAutoPrepare = given.Keys.Cast<string>().Any(k => k.Replace(" ", "", StringComparison.Ordinal).Equals("MaxAutoPrepare", StringComparison.OrdinalIgnoreCase));
        if (!setsAutoPrepare) builder.ConnectionStringBuilder.MaxAutoPrepare = DefaultMaxAutoPrepare;
        return builder.Build();
    }
}
