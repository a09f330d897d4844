using Carter;
using Integrations.Infrastructure.Http;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.ApiKeys;

/// <summary>The API keys area: creating, listing and revoking a tenant's keys under <c>/api-keys</c>.</summary>
public sealed class ApiKeysModule : ICarterModule
{
    public void AddRoutes(IEndpointRouteBuilder app)
    {
        var apiKeys = app.MapGroup("/api-keys").RequireAuthorization()
            .WithTag("API keys", "The tenant's API keys (scope admin): create (the key is shown once), list, revoke.");
        CreateApiKey.Map(apiKeys);
        ListApiKeys.Map(apiKeys);
        RevokeApiKey.Map(apiKeys);
        SetApiKeyLimits.Map(apiKeys);
    }
}
