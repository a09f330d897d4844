using Integrations.Common;
using Integrations.Features.ApiKeys;
using Integrations.Features.Credentials;
using Integrations.Features.Datasources;
using Integrations.Features.Policies;
using MediatR;

namespace Integrations.Api.AdminConsole;

public static partial class ConsoleEndpoints
{
    /// <summary>Credentials (metadata only), datasources, the tool policy and API keys.</summary>
    private static void MapGovernancePages(RouteGroupBuilder pages)
    {
        MapCredentialPages(pages);
        MapDatasourcePages(pages);

        pages.MapGet("/policies", (string? saved, HttpContext http, IMediator mediator) => PolicyAsync(http, mediator, null, null, saved));
        pages.MapPost("/policies", async (HttpContext http, IMediator mediator) =>
        {
            var form = new ConsoleForm(http.Request.Form);
            var command = new UpdateToolPolicy.Command(
                form.Text("risk_ceiling") ?? "",
                form.List("allow_list") ?? [],
                form.List("deny_list") ?? [],
                form.WholeNumber("default_rate_limit_per_minute"),
                form.WholeNumber("tenant_rate_limit_per_minute"));
            if (form.Problem is { } unread) return await PolicyAsync(http, mediator, unread, form.Values, null);
            var updated = await mediator.Send(command, http.RequestAborted);
            return updated.IsSuccess
                ? new SeeOtherResult($"{Root}/policies?saved=tools")
                : await PolicyAsync(http, mediator, updated.Error, form.Values, null);
        });
        pages.MapPost("/policies/credentials", async (HttpContext http, IMediator mediator) =>
        {
            var command = new UpdateCredentialPolicy.Command(new ConsoleForm(http.Request.Form).Checked("require_allowed_hosts"));
            return After(http, await mediator.Send(command, http.RequestAborted), $"{Root}/policies?saved=credentials#credential-policy");
        });

        pages.MapGet("/api-keys", (string? cursor, HttpContext http, IMediator mediator) => ApiKeysAsync(http, mediator, cursor, null, null, null));
        pages.MapPost("/api-keys", async (HttpContext http, IMediator mediator) =>
        {
            var form = new ConsoleForm(http.Request.Form);
            var command = new CreateApiKey.Command(form.Text("name") ?? "", form.All("scopes"), form.Instant("expires_at"));
            if (form.Problem is { } unread) return await ApiKeysAsync(http, mediator, null, null, unread, form.Values);
            var created = await mediator.Send(command, http.RequestAborted);
            // The new key is on this answer only (no redirect, not cached): a reload or the back button cannot show it again.
            http.Response.Headers.CacheControl = "no-store";
            return created.IsSuccess
                ? await ApiKeysAsync(http, mediator, null, created.Value, null, null)
                : await ApiKeysAsync(http, mediator, null, null, created.Error, form.Values);
        });
        pages.MapPost("/api-keys/{id:guid}/revoke", async (Guid id, HttpContext http, IMediator mediator) =>
            After(http, await mediator.Send(new RevokeApiKey.Command(id), http.RequestAborted), $"{Root}/api-keys"));
    }

    /// <summary>The tool and credential policies; <paramref name="saved"/> names the one just saved (tools, credentials).</summary>
    private static async Task<IResult> PolicyAsync(HttpContext http, IMediator mediator, Error? problem, IFormCollection? form, string? saved)
    {
        var policy = await mediator.Send(new GetToolPolicy.Query(), http.RequestAborted);
        if (!policy.IsSuccess) return Problem(http, policy.Error!);
        var credentials = await mediator.Send(new GetCredentialPolicy.Query(), http.RequestAborted);
        if (!credentials.IsSuccess) return Problem(http, credentials.Error!);
        var page = Page<PolicyPage>(http, new { Policy = policy.Value, CredentialPolicy = credentials.Value, Problem = problem, Form = form, Saved = saved });
        if (problem is not null) page.StatusCode = problem.Status;
        return page;
    }

    private static async Task<IResult> ApiKeysAsync(HttpContext http, IMediator mediator, string? cursor, CreateApiKey.Response? created,
        Error? problem, IFormCollection? form)
    {
        var keys = await mediator.Send(new ListApiKeys.Query(Limit: PageSize, Cursor: cursor), http.RequestAborted);
        if (!keys.IsSuccess) return Problem(http, keys.Error!);
        var page = Page<ApiKeysPage>(http, new { Keys = keys.Value, Cursor = cursor, Created = created, Problem = problem, Form = form });
        if (problem is not null) page.StatusCode = problem.Status;
        return page;
    }
}
