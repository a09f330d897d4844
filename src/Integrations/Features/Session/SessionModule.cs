using Carter;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.Session;

/// <summary>The session area: <c>GET /session</c>, who the caller's key says it is.</summary>
public sealed class SessionModule : ICarterModule
{
    public void AddRoutes(IEndpointRouteBuilder app) => GetSession.Map(app);
}
