using Integrations.Common;
using Integrations.Features.McpServers;
using MediatR;

namespace Integrations.Api.AdminConsole;

/// <summary>The invocation filters as the page's query string carries them (blank fields are no filter).</summary>
public sealed record InvocationFilter(string? Tool, string? Outcome, string? RunId)
{
    public static InvocationFilter From(string? tool, string? outcome, string? runId) =>
        new(Blank(tool), Blank(outcome), Blank(runId));

    /// <summary>The filters as the pager repeats them, or null when there is none.</summary>
    public string? QueryString => ConsoleQuery.Of(("tool", Tool), ("outcome", Outcome), ("run_id", RunId));

    private static string? Blank(string? value) => ConsoleQuery.Blank(value);
}

public static partial class ConsoleEndpoints
{
    private static void MapInvocationPages(RouteGroupBuilder pages)
    {
        pages.MapGet("/invocations", async (string? tool, string? outcome, [Microsoft.AspNetCore.Mvc.FromQuery(Name = "run_id")] string? runId,
            string? cursor, HttpContext http, IMediator mediator) =>
        {
            var filter = InvocationFilter.From(tool, outcome, runId);
            return Show(http, await mediator.Send(new ListToolInvocations.Query(null, filter.Outcome, filter.Tool, filter.RunId, Limit: PageSize, Cursor: cursor),
                http.RequestAborted), list => Page<InvocationsPage>(http, new { Invocations = list, Filter = filter, Cursor = cursor }));
        });
        pages.MapGet("/invocations/{id:guid}", async (Guid id, HttpContext http, IMediator mediator) =>
            Show(http, await mediator.Send(new GetInvocation.Query(id), http.RequestAborted), call => Page<InvocationPage>(http, new { Call = call })));
        pages.MapPost("/mcp-servers/{id:guid}/tools/{toolId:guid}/invoke", async (Guid id, Guid toolId, HttpContext http, IMediator mediator) =>
        {
            var form = new ConsoleForm(http.Request.Form);
            var arguments = form.Json("arguments");
            var called = form.Problem is { } unread
                ? unread
                : await mediator.Send(new InvokeMcpTool.Command(id, toolId, arguments, form.Text("run_id")), http.RequestAborted);
            return await ToolAsync(http, mediator, id, toolId, called, form.Values);
        });
    }
}
