using Dapper;
using Integrations.Common;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.Notifications;

/// <summary>notifications.get: the tenant's incident routing rules, in order.</summary>
public static class GetNotifications
{
    public sealed record Query : IOperation<Notifications.Response>
    {
        public static string Operation => "notifications.get";
        public static string Scope => Scopes.Read;
    }

    internal sealed class Handler(TenantSession session) : IRequestHandler<Query, Result<Notifications.Response>>
    {
        public async Task<Result<Notifications.Response>> Handle(Query request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var rows = await connection.QueryAsync<Notifications.Row>(new CommandDefinition(Notifications.RulesSql, new { session.TenantId }, cancellationToken: ct));
            return new Notifications.Response(rows.Select(r => r.ToRule()).ToList());
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/", async (IMediator mediator, HttpContext http) => (await mediator.Send(new Query(), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("The incident routing rules.")
            .Produces<Notifications.Response>();
}
