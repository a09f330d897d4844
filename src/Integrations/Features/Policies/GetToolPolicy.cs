using Integrations.Common;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.Policies;

public static class GetToolPolicy
{
    public sealed record Query : IOperation<ToolPolicy>
    {
        public static string Operation => "policies.get";
        public static string Scope => Scopes.Read;
    }

    internal sealed class Handler(TenantSession session, ToolPolicyStore policies) : IRequestHandler<Query, Result<ToolPolicy>>
    {
        public async Task<Result<ToolPolicy>> Handle(Query request, CancellationToken ct) =>
            await policies.GetAsync(await session.ConnectionAsync(ct), session.TenantId, ct);
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/tools", async (IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("The tenant's tool policy: risk ceiling, allow and deny lists, default and tenant-wide rate limits.")
            .Produces<ToolPolicy>();
}
