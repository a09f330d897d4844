using FluentValidation;
using Integrations.Common;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.McpServers;

public static class EnableMcpServer
{
    /// <summary>Why the server is back in service (optional, up to 500 characters); kept in the audit event.</summary>
    public sealed record Body(string? Reason = null);

    public sealed record Command(Guid Id, string? Reason = null) : IOperation<McpServer.Response>, IAudited
    {
        public static string Operation => "mcp_servers.enable";
        public static string Scope => Scopes.Write;
    }

    internal sealed class Validator : AbstractValidator<Command>
    {
        public Validator() => RuleFor(x => x.Reason).ValidStatusReason();
    }

    /// <summary>
    /// Only a <c>disabled</c> server can be enabled, and it becomes <c>pending</c>, not <c>active</c>: enabling does not
    /// reach the server, so nothing is known about whether it answers now. The next health check (the sweep takes
    /// pending servers on its next pass) or discovery records what it finds. A pending server's tools can be
    /// invoked again at once, as those of a degraded or unreachable one can: only <c>disabled</c> refuses calls.
    /// </summary>
    internal sealed class Handler(TenantSession session, AuditTrail audit) : IRequestHandler<Command, Result<McpServer.Response>>
    {
        public async Task<Result<McpServer.Response>> Handle(Command request, CancellationToken ct)
        {
            var moved = await McpServer.MoveAsync(session, audit, McpServer.Enabling, request.Id, request.Reason, ct);
            return moved.IsSuccess ? moved.Value.ToResponse() : moved.Error!;
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPost("/{id:guid}/enable", async (Guid id, Body? body, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id, body?.Reason), http.RequestAborted)).ToHttp(http))
            .WithName(Command.Operation)
            .WithSummary("Put a disabled MCP server back in service: status 'pending' until the next health check or discovery; its tools can be invoked again.")
            .Produces<McpServer.Response>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status409Conflict);
}
