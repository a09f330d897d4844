using Carter;
using Integrations.Infrastructure.Http;
using Integrations.Pipeline.Governance;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Features.LlmGateway;

/// <summary>
/// The LLM gateway: the OpenAI-compatible surface at <c>/v1</c> (its errors in OpenAI's shape) over the tenant's
/// integrations, its usage rows under <c>/integrations/llm-requests</c> and prices under <c>/integrations/llm-prices</c>; the provider client and the governed-call kind.
/// </summary>
public sealed class LlmGatewayModule : ICarterModule
{
    public void AddRoutes(IEndpointRouteBuilder app)
    {
        var v1 = app.MapGroup("/v1").RequireAuthorization()
            .WithTag("LLM gateway", "OpenAI- and Anthropic-compatible endpoints (/v1) that forward to the tenant's BYOK integrations under governance, with the request log and prices.");
        InvokeLlm.Map(v1);
        ListLlmModels.Map(v1);

        var requests = app.MapGroup("/integrations/llm-requests").WithTags("LLM gateway").RequireAuthorization();
        ListLlmRequests.Map(requests);
        ListLlmUsageByDay.Map(requests);

        var prices = app.MapGroup("/integrations/llm-prices").WithTags("LLM gateway").RequireAuthorization();
        ListLlmPrices.Map(prices);
        SetLlmPrice.Map(prices);
    }

    /// <summary>Settings from <c>Integrations:Llm</c>.</summary>
    public static void AddServices(IServiceCollection services, IConfiguration configuration)
    {
        services.AddSingleton(LlmSettings.FromConfiguration(configuration));
        services.AddSingleton<LlmUpstream>();
        services.AddGovernedCallKind<InvokeLlm.Command, LlmCall>();
    }
}
