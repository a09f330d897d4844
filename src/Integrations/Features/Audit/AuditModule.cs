using Carter;
using Integrations.Infrastructure.Http;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.Audit;

/// <summary>The audit area: reading and verifying the trail under <c>/audit</c> (writing it is the pipeline's).</summary>
public sealed class AuditModule : ICarterModule
{
    public void AddRoutes(IEndpointRouteBuilder app)
    {
        var audit = app.MapGroup("/audit").RequireAuthorization()
            .WithTag("Audit", "The immutable, hash-chained audit trail: events, chain verification and anchors.");
        ListAuditEvents.Map(audit);
        VerifyAuditChain.Map(audit);
        ListAuditAnchors.Map(audit);
    }
}
