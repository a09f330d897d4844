using Carter;
using Integrations.Features.Connectors.Adapters;
using Integrations.Infrastructure.Http;
using Integrations.Pipeline.Governance;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Features.Connectors;

/// <summary>
/// The connectors area: the catalog of connector manifests under <c>/connectors</c>, the tenant's connections under
/// <c>/connections</c> with their governed action calls, and the built-in adapters.
/// </summary>
public sealed class ConnectorsModule : ICarterModule
{
    public void AddRoutes(IEndpointRouteBuilder app)
    {
        var connectors = app.MapGroup("/connectors").RequireAuthorization()
            .WithTag("Connectors", "The connector catalog: built-in connectors and the tenant's registered http manifests (schemas/connector-manifest.schema.json), pinned like tool definitions.");
        ListConnectors.Map(connectors);
        GetConnector.Map(connectors);
        RegisterConnector.Map(connectors);
        ApproveConnector.Map(connectors);

        var connections = app.MapGroup("/connections").RequireAuthorization()
            .WithTag("Connections", "A connector bound to a configuration and a vault credential; its actions are governed calls, and tools on the MCP gateway (<connection>__<action>).");
        CreateConnection.Map(connections);
        ListConnections.Map(connections);
        GetConnection.Map(connections);
        DeleteConnection.Map(connections);
        TestConnection.Map(connections);
        InvokeConnection.Map(connections);
        ListWebhookDeliveries.Map(connections);
        InvokeConnection.MapRedeliver(connections);
    }

    public static void AddServices(IServiceCollection services)
    {
        // Built now, so a built-in manifest that does not pass its own schema stops the service from starting.
        services.AddSingleton(new ConnectorCatalog());
        services.AddSingleton<HttpAdapter>();
        services.AddSingleton<IConnectorAdapter>(sp => sp.GetRequiredService<HttpAdapter>());
        services.AddSingleton<WebhookAdapter>();
        services.AddSingleton<IConnectorAdapter>(sp => sp.GetRequiredService<WebhookAdapter>());
        services.AddSingleton<SlackAdapter>();
        services.AddSingleton<IConnectorAdapter>(sp => sp.GetRequiredService<SlackAdapter>());
        services.AddSingleton<IConnectorAdapter, SmtpAdapter>();
        services.AddSingleton<IConnectorAdapter, S3Adapter>();
        services.AddSingleton<ConnectorAdapters>();
        services.AddGovernedCallKind<InvokeConnection.Command, ConnectionCall>();
    }
}
