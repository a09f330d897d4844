using Integrations.Common;
using Integrations.Features.Integrations;
using MediatR;

namespace Integrations.Api.AdminConsole;

public static partial class ConsoleEndpoints
{
    private static void MapIntegrationPages(RouteGroupBuilder pages)
    {
        pages.MapGet("/integrations", (string? status, string? cursor, HttpContext http, IMediator mediator) =>
            IntegrationsAsync(http, mediator, status, cursor, null, null));
        pages.MapPost("/integrations", async (HttpContext http, IMediator mediator) =>
        {
            var form = new ConsoleForm(http.Request.Form);
            var command = new CreateIntegration.Command(
                form.Text("name") ?? "",
                form.Text("provider") ?? "",
                form.Text("base_url"),
                form.Text("credential_ref"),
                new Integration.Limits(form.WholeNumber("requests_per_minute"), form.LargeWholeNumber("tokens_per_month"), form.LargeWholeNumber("budget_cents_per_month")),
                form.List("allowed_models"));
            if (form.Problem is { } unread) return await IntegrationsAsync(http, mediator, null, null, unread, form.Values);
            var created = await mediator.Send(command, http.RequestAborted);
            return created.IsSuccess
                ? new SeeOtherResult($"{Root}/integrations")
                : await IntegrationsAsync(http, mediator, null, null, created.Error, form.Values);
        });
        pages.MapPost("/integrations/{id:guid}/health", async (Guid id, HttpContext http, IMediator mediator) =>
            After(http, await mediator.Send(new CheckIntegrationHealth.Command(id), http.RequestAborted), $"{Root}/integrations"));
    }

    /// <summary>The list, and the create form with what was typed and why it was refused when a create failed.</summary>
    private static async Task<IResult> IntegrationsAsync(HttpContext http, IMediator mediator, string? status, string? cursor, Error? problem, IFormCollection? form)
    {
        var shown = string.IsNullOrEmpty(status) ? null : status;
        var list = await mediator.Send(new QueryIntegrations.Query(Status: shown, Limit: PageSize, Cursor: cursor), http.RequestAborted);
        if (!list.IsSuccess) return Problem(http, list.Error!);
        var page = Page<IntegrationsPage>(http, new { Integrations = list.Value, Status = shown, Cursor = cursor, Problem = problem, Form = form });
        if (problem is not null) page.StatusCode = problem.Status;
        return page;
    }
}
