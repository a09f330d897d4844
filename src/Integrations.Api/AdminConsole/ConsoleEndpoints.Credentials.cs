using Integrations.Common;
using Integrations.Features.Credentials;
using MediatR;

namespace Integrations.Api.AdminConsole;

public static partial class ConsoleEndpoints
{
    /// <summary>
    /// Credentials: metadata, store, rotate, grants and the access log. A secret goes from the form to the operation and
    /// nowhere else: a refused form is shown again with every field but the secret ones.
    /// </summary>
    private static void MapCredentialPages(RouteGroupBuilder pages)
    {
        pages.MapGet("/credentials", (string? cursor, HttpContext http, IMediator mediator) => CredentialsAsync(http, mediator, cursor, null, null));
        pages.MapPost("/credentials", async (HttpContext http, IMediator mediator) =>
        {
            var form = new ConsoleForm(http.Request.Form);
            var command = new StoreCredential.Command(
                form.Text("name") ?? "",
                form.Text("type") ?? "",
                form.Secret("secret"),
                form.Text("username"),
                form.Secret("password"),
                form.Pairs("fields"),
                form.Text("description"),
                form.List("allowed_hosts"));
            if (form.Problem is { } unread) return await CredentialsAsync(http, mediator, null, unread, form.Values);
            var stored = await mediator.Send(command, http.RequestAborted);
            return stored.IsSuccess
                ? new SeeOtherResult($"{Root}/credentials/{stored.Value.Id}")
                : await CredentialsAsync(http, mediator, null, stored.Error, form.Values);
        });
        pages.MapGet("/credentials/{id:guid}", (Guid id, string? cursor, string? done, HttpContext http, IMediator mediator) =>
            CredentialAsync(http, mediator, id, cursor, null, null, done));
        pages.MapPost("/credentials/{id:guid}/rotate", async (Guid id, HttpContext http, IMediator mediator) =>
        {
            var form = new ConsoleForm(http.Request.Form);
            var command = new RotateCredential.Command(id, new RotateCredential.Body(
                form.Secret("secret"), form.Text("username"), form.Secret("password"), form.Pairs("fields"), form.List("allowed_hosts")));
            if (form.Problem is { } unread) return await CredentialAsync(http, mediator, id, null, unread, form.Values, null);
            var rotated = await mediator.Send(command, http.RequestAborted);
            return rotated.IsSuccess
                ? new SeeOtherResult($"{Root}/credentials/{id}?done=rotated")
                : await CredentialAsync(http, mediator, id, null, rotated.Error, form.Values, null);
        });
        pages.MapPost("/credentials/{id:guid}/grants", async (Guid id, HttpContext http, IMediator mediator) =>
        {
            var form = new ConsoleForm(http.Request.Form);
            var command = new GrantCredential.Command(id, form.Text("accessor_type") ?? "", form.Id("accessor_id") ?? Guid.Empty);
            if (form.Problem is { } unread) return await CredentialAsync(http, mediator, id, null, unread, form.Values, null);
            var granted = await mediator.Send(command, http.RequestAborted);
            return granted.IsSuccess
                ? new SeeOtherResult($"{Root}/credentials/{id}?done=granted")
                : await CredentialAsync(http, mediator, id, null, granted.Error, form.Values, null);
        });
        pages.MapPost("/credentials/{id:guid}/grants/{accessorType}/{accessorId:guid}/remove",
            async (Guid id, string accessorType, Guid accessorId, HttpContext http, IMediator mediator) =>
                After(http, await mediator.Send(new RevokeCredentialGrant.Command(id, accessorType, accessorId), http.RequestAborted),
                    $"{Root}/credentials/{id}?done=removed"));
    }

    private static async Task<IResult> CredentialsAsync(HttpContext http, IMediator mediator, string? cursor, Error? problem, IFormCollection? form)
    {
        var list = await mediator.Send(new ListCredentials.Query(Limit: PageSize, Cursor: cursor), http.RequestAborted);
        if (!list.IsSuccess) return Problem(http, list.Error!);
        var page = Page<CredentialsPage>(http, new { Credentials = list.Value, Cursor = cursor, Problem = problem, Form = form });
        if (problem is not null) page.StatusCode = problem.Status;
        return page;
    }

    /// <summary>One credential; after a refused rotate or grant, with the problem and the non-secret fields typed.</summary>
    private static async Task<IResult> CredentialAsync(HttpContext http, IMediator mediator, Guid id, string? cursor, Error? problem,
        IFormCollection? form, string? done)
    {
        var credential = await mediator.Send(new GetCredential.Query(id), http.RequestAborted);
        if (!credential.IsSuccess) return Problem(http, credential.Error!);
        var access = await mediator.Send(new ListCredentialAccessLog.Query(id, Limit: PageSize, Cursor: cursor), http.RequestAborted);
        if (!access.IsSuccess) return Problem(http, access.Error!);
        var page = Page<CredentialPage>(http, new
        {
            Credential = credential.Value,
            Access = access.Value,
            Cursor = cursor,
            Problem = problem,
            Form = form,
            Done = done,
        });
        if (problem is not null) page.StatusCode = problem.Status;
        return page;
    }
}
