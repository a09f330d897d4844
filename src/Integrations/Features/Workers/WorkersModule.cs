using Carter;
using Integrations.Infrastructure.Http;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.Workers;

/// <summary>The workers area: <c>GET /workers</c>, the background jobs of the replica that answers and how their passes went.</summary>
public sealed class WorkersModule : ICarterModule
{
    public void AddRoutes(IEndpointRouteBuilder app)
    {
        var workers = app.MapGroup("/workers").RequireAuthorization()
            .WithTag("Workers", "The background jobs (health sweeps, pruning, anchoring, budget alerts, anomaly detection) of the answering replica: last run, duration, outcome, next run, last error.");
        ListWorkers.Map(workers);
    }
}
