using FluentValidation;
using Integrations.Common;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using Integrations.Infrastructure.Mcp;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.McpServers;

public static class DisableMcpServer
{
    /// <summary>Why the server is taken out of service (optional, up to 500 characters); kept in the audit event.</summary>
    public sealed record Body(string? Reason = null);

    public sealed record Command(Guid Id, string? Reason = null) : IOperation<McpServer.Response>, IAudited
    {
        public static string Operation => "mcp_servers.disable";
        public static string Scope => Scopes.Write;
    }

    internal sealed class Validator : AbstractValidator<Command>
    {
        public Validator() => RuleFor(x => x.Reason).ValidStatusReason();
    }

    /// <summary>
    /// Any live status but <c>disabled</c> moves to <c>disabled</c>: tools.invoke then refuses every tool of the server
    /// (rule <c>server_disabled</c>, on the very next call of every replica: the status change is a new row version),
    /// health checks, the sweep and discovery leave the status alone, and the pooled session is closed.
    /// </summary>
    internal sealed class Handler(TenantSession session, AuditTrail audit, McpSessions sessions)
        : IRequestHandler<Command, Result<McpServer.Response>>
    {
        public async Task<Result<McpServer.Response>> Handle(Command request, CancellationToken ct)
        {
            var moved = await McpServer.MoveAsync(session, audit, McpServer.Disabling, request.Id, request.Reason, ct);
            if (!moved.IsSuccess) return moved.Error!;
            // Closed before the commit, as delete does: a call admitted before this commits may still open one (the idle
            // timeout closes it); every call decided after the commit is refused without reaching the server.
            sessions.Close(session.TenantId, request.Id);
            return moved.Value.ToResponse();
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPost("/{id:guid}/disable", async (Guid id, Body? body, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id, body?.Reason), http.RequestAborted)).ToHttp(http))
            .WithName(Command.Operation)
            .WithSummary("Take an MCP server out of service: its tools are denied (server_disabled) until it is enabled; its session is closed.")
            .Produces<McpServer.Response>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status409Conflict);
}
