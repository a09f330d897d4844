using Integrations.Features.Audit;
using Integrations.Features.Credentials;
using Integrations.Features.Integrations;
using Integrations.Features.McpServers;
using Integrations.Infrastructure.Governance;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations;

/// <summary>One route group per feature area; each slice adds its own route, named by its operation.</summary>
public static class IntegrationsEndpoints
{
    public static IEndpointRouteBuilder MapIntegrationsApi(this IEndpointRouteBuilder app)
    {
        var integrations = app.MapGroup("/integrations").WithTags("Integrations").RequireAuthorization();
        CreateIntegration.Map(integrations);
        QueryIntegrations.Map(integrations);
        GetIntegration.Map(integrations);
        UpdateIntegration.Map(integrations);
        EnableIntegration.Map(integrations);
        DisableIntegration.Map(integrations);
        DeleteIntegration.Map(integrations);

        var apiKeys = app.MapGroup("/api-keys").WithTags("API keys").RequireAuthorization();
        Features.ApiKeys.CreateApiKey.Map(apiKeys);
        Features.ApiKeys.ListApiKeys.Map(apiKeys);
        Features.ApiKeys.RevokeApiKey.Map(apiKeys);
        Features.Session.GetSession.Map(app);

        var audit = app.MapGroup("/audit").WithTags("Audit").RequireAuthorization();
        ListAuditEvents.Map(audit);
        VerifyAuditChain.Map(audit);
        ListAuditAnchors.Map(audit);
        app.MapGovernanceApi();
        app.MapCredentialsApi();
        app.MapMcpServersApi();
        Features.Datasources.DatasourcesEndpoints.MapDatasources(app);
        return app;
    }
}
