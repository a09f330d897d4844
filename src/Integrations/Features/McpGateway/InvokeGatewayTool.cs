using System.Text.Json;
using FluentValidation;
using Integrations.Common;
using Integrations.Features.McpServers;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using ModelContextProtocol;

namespace Integrations.Features.McpGateway;

/// <summary>
/// tools.invoke_by_name: a tool called by its gateway name (REST <c>POST /tools/{name}/invoke</c> and the MCP gateway's
/// <c>tools/call</c>). It only finds the tool in the tenant's catalog and sends <see cref="InvokeMcpTool.Command"/>, so
/// the call is the governed <c>tools.invoke</c> itself — same rules, audit, record and incident. A name the tenant has
/// no tool under is 404 <c>not_found</c>, as another tenant's tool would be.
/// </summary>
public static class InvokeGatewayTool
{
    /// <param name="VirtualServer">Called through <c>/mcp/{name}</c>: a tool that virtual server does not serve is unknown there.</param>
    public sealed record Command(
        string Name, JsonElement Arguments = default, string? RunId = null, int? TimeoutMs = null,
        IProgress<ProgressNotificationValue>? Progress = null, string? VirtualServer = null)
        : IOperation<InvokeMcpTool.Response>
    {
        public static string Operation => "tools.invoke_by_name";
        public static string Scope => Scopes.Invoke;
    }

    internal sealed class Validator : AbstractValidator<Command>
    {
        public Validator()
        {
            RuleFor(x => x.Name).NotEmpty().MaximumLength(GatewayToolNames.MaxLength);
        }
    }

    internal sealed class Handler(TenantSession session, GatewayCatalog catalog, IMediator mediator)
        : IRequestHandler<Command, Result<InvokeMcpTool.Response>>
    {
        public async Task<Result<InvokeMcpTool.Response>> Handle(Command request, CancellationToken ct)
        {
            var cached = catalog.TryGetCached(session.TenantId, out var snapshot);
            if (!cached || !snapshot!.ByName.ContainsKey(request.Name)
                || (request.VirtualServer is not null && !snapshot.VirtualServers.ContainsKey(request.VirtualServer)))
            {
                // A name missing from this replica's copy may belong to a tool registered a moment ago, before the
                // change notification arrived: a miss always reads the catalog again.
                snapshot = await catalog.GetAsync(await session.ConnectionAsync(ct), session.TenantId, ct, readThrough: cached);
                // The governed call opens what it needs; no transaction of ours stays open across the upstream call.
                await session.RollbackAsync();
            }
            if (!snapshot.ByName.TryGetValue(request.Name, out var tool)
                || (request.VirtualServer is not null
                    && !(snapshot.VirtualServers.TryGetValue(request.VirtualServer, out var within) && tool.IsIn(within))))
            {
                return new Error("not_found", 404, "Not found.", $"No tool is named '{request.Name}'; GET /tools lists the tools you can call.");
            }
            return await mediator.Send(new InvokeMcpTool.Command(tool.ServerId, tool.ToolId, request.Arguments, request.RunId, request.TimeoutMs, request.Progress), ct);
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPost("/{name}/invoke", async (string name, InvokeMcpTool.Body body, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(name, body.Arguments ?? default, body.RunId, body.TimeoutMs), http.RequestAborted)).ToHttp(http))
            .WithName(Command.Operation)
            .WithSummary("Call a tool by its gateway name (<server>__<tool>, as GET /tools and /mcp name it): the same governed call as tools.invoke.")
            .Produces<InvokeMcpTool.Response>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status403Forbidden)
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status429TooManyRequests)
            .ProducesProblem(StatusCodes.Status502BadGateway)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .ProducesProblem(StatusCodes.Status504GatewayTimeout);
}
