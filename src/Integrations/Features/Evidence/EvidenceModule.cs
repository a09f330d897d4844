using Carter;
using Integrations.Infrastructure.Http;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.Evidence;

/// <summary>The evidence area: its routes under <c>/evidence</c> — the policies that keep call outputs, and the kept outputs.</summary>
public sealed class EvidenceModule : ICarterModule
{
    public void AddRoutes(IEndpointRouteBuilder app)
    {
        var evidence = app.MapGroup("/evidence").RequireAuthorization()
            .WithTag("Evidence", "Call outputs kept as evidence (opt-in per MCP server, tool or datasource; redacted, capped, retained for a period).");
        GetEvidencePolicy.Map(evidence);
        UpdateEvidencePolicy.Map(evidence);
        GetEvidence.Map(evidence);
    }
}
