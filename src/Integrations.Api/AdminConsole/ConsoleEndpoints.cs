using Integrations.Common;
using Integrations.Features.Audit;
using Integrations.Features.Incidents;
using Integrations.Features.Integrations;
using Integrations.Features.McpServers;
using MediatR;
using Microsoft.AspNetCore.Antiforgery;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;

namespace Integrations.Api.AdminConsole;

/// <summary>
/// The admin console at <c>/console</c>: server-rendered pages (Razor components, static rendering) over the same
/// mediator operations as the API. A page's handler sends the operation with the session's caller and renders what it
/// answers; the pipeline's scope checks, validators and audit apply as they do to an API call.
/// </summary>
public static partial class ConsoleEndpoints
{
    public const string Root = "/console";

    /// <summary>A first page large enough to count what a tenant usually has; past it the overview says "200+".</summary>
    private const int CountLimit = 200;

    private const int PageSize = 25;

    public static IServiceCollection AddConsole(this IServiceCollection services)
    {
        services.AddRazorComponents();
        services.AddAntiforgery(o =>
        {
            o.FormFieldName = ConsoleView.CsrfField;
            o.Cookie.Name = "integrations_console_csrf";
            o.Cookie.Path = Root;
            o.Cookie.SameSite = SameSiteMode.Strict;
            o.Cookie.SecurePolicy = CookieSecurePolicy.SameAsRequest;
        });
        services.AddSingleton<ConsoleSession>();
        return services;
    }

    public static void MapConsole(this IEndpointRouteBuilder app)
    {
        var open = app.MapGroup(Root).ExcludeFromDescription();
        open.MapGet("/sign-in", (HttpContext http, IAntiforgery antiforgery) =>
            Page<SignInPage>(new { Csrf = antiforgery.GetAndStoreTokens(http) }));
        open.MapPost("/sign-in", SignInAsync);
        open.MapPost("/sign-out", async (HttpContext http, IAntiforgery antiforgery, ConsoleSession session) =>
        {
            if (!await antiforgery.IsRequestValidAsync(http)) return CsrfRefused();
            await session.SignOutAsync(http);
            return Results.Redirect(Root + "/sign-in");
        });

        var pages = app.MapGroup(Root).ExcludeFromDescription().AddEndpointFilter(RequireSessionAsync);
        pages.MapGet("/", OverviewAsync);
        pages.MapGet("/mcp-servers", async (string? cursor, HttpContext http, IMediator mediator) =>
            Show(http, await mediator.Send(new ListMcpServers.Query(Limit: PageSize, Cursor: cursor), http.RequestAborted),
                page => Page<ServersPage>(http, new { Servers = page, Cursor = cursor })));
        pages.MapPost("/mcp-servers", async (HttpContext http, IMediator mediator) =>
        {
            var form = http.Request.Form;
            var registered = await mediator.Send(new RegisterMcpServer.Command(form["name"].ToString(), form["url"].ToString()), http.RequestAborted);
            return After(http, registered, r => $"{Root}/mcp-servers/{r.Server.Id}");
        });
        pages.MapGet("/mcp-servers/{id:guid}", ServerAsync);
        pages.MapPost("/mcp-servers/{id:guid}/tools/{toolId:guid}/enabled", async (Guid id, Guid toolId, HttpContext http, IMediator mediator) =>
        {
            var enabled = http.Request.Form["enabled"].ToString() == "true";
            var updated = await mediator.Send(new UpdateMcpTool.Command(id, toolId, new UpdateMcpTool.Body(Enabled: enabled)), http.RequestAborted);
            return After(http, updated, $"{Root}/mcp-servers/{id}");
        });
        pages.MapGet("/mcp-servers/{id:guid}/tools/{toolId:guid}", (Guid id, Guid toolId, HttpContext http, IMediator mediator) =>
            ToolAsync(http, mediator, id, toolId, null, null));
        pages.MapPost("/mcp-servers/{id:guid}/tools/{toolId:guid}/approve", async (Guid id, Guid toolId, HttpContext http, IMediator mediator) =>
        {
            var approved = await mediator.Send(new UpdateMcpTool.Command(id, toolId,
                new UpdateMcpTool.Body(ApproveHash: http.Request.Form["approve_hash"].ToString())), http.RequestAborted);
            return After(http, approved, $"{Root}/mcp-servers/{id}/tools/{toolId}");
        });
        pages.MapPost("/mcp-servers/{id:guid}/disable", async (Guid id, HttpContext http, IMediator mediator) =>
            After(http, await mediator.Send(new DisableMcpServer.Command(id, new ConsoleForm(http.Request.Form).Text("reason")), http.RequestAborted),
                $"{Root}/mcp-servers/{id}"));
        pages.MapPost("/mcp-servers/{id:guid}/enable", async (Guid id, HttpContext http, IMediator mediator) =>
            After(http, await mediator.Send(new EnableMcpServer.Command(id, new ConsoleForm(http.Request.Form).Text("reason")), http.RequestAborted),
                $"{Root}/mcp-servers/{id}"));
        pages.MapPost("/mcp-servers/{id:guid}/tools/{toolId:guid}/rate-limit", async (Guid id, Guid toolId, HttpContext http, IMediator mediator) =>
        {
            // Blank is "no limit of its own" as 0 is: the tenant's default applies.
            var form = new ConsoleForm(http.Request.Form);
            var limit = form.WholeNumber("rate_limit_per_minute") ?? 0;
            if (form.Problem is { } unread) return Problem(http, unread);
            var updated = await mediator.Send(new UpdateMcpTool.Command(id, toolId, new UpdateMcpTool.Body(RateLimitPerMinute: limit)), http.RequestAborted);
            return After(http, updated, $"{Root}/mcp-servers/{id}/tools/{toolId}");
        });
        pages.MapPost("/mcp-servers/{id:guid}/discover", async (Guid id, HttpContext http, IMediator mediator) =>
            After(http, await mediator.Send(new DiscoverMcpServer.Command(id), http.RequestAborted), $"{Root}/mcp-servers/{id}"));
        pages.MapPost("/mcp-servers/{id:guid}/health", async (Guid id, HttpContext http, IMediator mediator) =>
            After(http, await mediator.Send(new CheckMcpServerHealth.Command(id), http.RequestAborted), $"{Root}/mcp-servers/{id}"));
        pages.MapGet("/audit", (string? action, [FromQuery(Name = "subject_type")] string? subjectType, [FromQuery(Name = "subject_id")] string? subjectId,
                string? from, string? to, [FromQuery(Name = "run_id")] string? runId, string? cursor, HttpContext http, IMediator mediator) =>
            AuditAsync(http, mediator, AuditFilter.Read(action, subjectType, subjectId, from, to, runId), cursor, null));
        pages.MapPost("/audit/verify", async (HttpContext http, IMediator mediator) =>
        {
            var verified = await mediator.Send(new VerifyAuditChain.Query(), http.RequestAborted);
            return verified.IsSuccess
                ? await AuditAsync(http, mediator, AuditFilter.Read(null, null, null, null, null, null), null, verified.Value)
                : Problem(http, verified.Error!);
        });
        pages.MapGet("/incidents", async (string? status, string? cursor, HttpContext http, IMediator mediator) =>
        {
            var shown = status is null or "" ? "open" : status == "all" ? null : status;
            return Show(http, await mediator.Send(new ListIncidents.Query(shown, Limit: PageSize, Cursor: cursor), http.RequestAborted),
                page => Page<IncidentsPage>(http, new { Incidents = page, Status = shown ?? "all", Cursor = cursor }));
        });
        pages.MapPost("/incidents/{id:guid}/acknowledge", (Guid id, HttpContext http, IMediator mediator) =>
            IncidentActionAsync(http, mediator.Send(new AcknowledgeIncident.Command(id), http.RequestAborted)));
        pages.MapPost("/incidents/{id:guid}/resolve", (Guid id, HttpContext http, IMediator mediator) =>
            IncidentActionAsync(http, mediator.Send(new ResolveIncident.Command(id), http.RequestAborted)));
        MapIntegrationPages(pages);
        MapInvocationPages(pages);
        MapGovernancePages(pages);
        pages.MapGet("/usage", async (int? days, [FromQuery(Name = "integration_id")] string? integrationId, HttpContext http, IMediator mediator) =>
        {
            // Read like a form field, so an id that is not one is a field error on the page rather than a bare 400.
            var form = new ConsoleForm(new FormCollection(new() { ["integration_id"] = integrationId ?? "" }));
            var integration = form.Id("integration_id");
            if (form.Problem is { } unread) return Problem(http, unread);
            var integrations = await mediator.Send(new QueryIntegrations.Query(Limit: CountLimit), http.RequestAborted);
            if (!integrations.IsSuccess) return Problem(http, integrations.Error!);
            return Show(http, await mediator.Send(new Features.LlmGateway.ListLlmUsageByDay.Query(days ?? 30, integration), http.RequestAborted),
                usage => Page<UsagePage>(http, new { Usage = usage.Days, Integrations = integrations.Value, IntegrationId = integration }));
        });
    }

    private static async Task<IResult> SignInAsync(HttpContext http, IAntiforgery antiforgery, ConsoleSession session)
    {
        if (!await antiforgery.IsRequestValidAsync(http)) return CsrfRefused();
        var key = http.Request.Form["api_key"].ToString();
        var check = key.Length == 0
            ? new Infrastructure.Security.ApiKeyCheck(null, "Enter an API key (ik_...); ./build.sh run prints one, ./build.sh api-key creates more.")
            : await session.SignInAsync(http, key);
        if (check.Caller is not null) return new SeeOtherResult(Root);
        var refused = Page<SignInPage>(new { Csrf = antiforgery.GetAndStoreTokens(http), Problem = Error.Unauthenticated(check.Refusal!) });
        refused.StatusCode = StatusCodes.Status401Unauthorized;
        return refused;
    }

    /// <summary>
    /// Every page but sign-in needs a session whose key is still valid; the caller it stands for is the one the
    /// mediator sees. A form post also needs the CSRF token its page carried.
    /// </summary>
    private static async ValueTask<object?> RequireSessionAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var http = context.HttpContext;
        var caller = await http.RequestServices.GetRequiredService<ConsoleSession>().CallerAsync(http);
        if (caller is null) return Results.Redirect(Root + "/sign-in");
        var antiforgery = http.RequestServices.GetRequiredService<IAntiforgery>();
        if (HttpMethods.IsPost(http.Request.Method) && !await antiforgery.IsRequestValidAsync(http)) return CsrfRefused();
        http.RequestServices.GetRequiredService<CallerContext>().Set(caller);
        http.Items[typeof(ConsoleView)] = new ConsoleView(caller, antiforgery.GetAndStoreTokens(http), http.Request.Path);
        return await next(context);
    }

    private static async Task<IResult> OverviewAsync(HttpContext http, IMediator mediator, TimeProvider time)
    {
        var ct = http.RequestAborted;
        var integrations = await mediator.Send(new QueryIntegrations.Query(Limit: CountLimit), ct);
        if (!integrations.IsSuccess) return Problem(http, integrations.Error!);
        var servers = await mediator.Send(new ListMcpServers.Query(Limit: CountLimit), ct);
        if (!servers.IsSuccess) return Problem(http, servers.Error!);
        var incidents = await mediator.Send(new ListIncidents.Query("open", Limit: CountLimit), ct);
        if (!incidents.IsSuccess) return Problem(http, incidents.Error!);
        var today = await mediator.Send(new Features.LlmGateway.ListLlmUsageByDay.Query(Days: 1), ct);
        if (!today.IsSuccess) return Problem(http, today.Error!);
        var midnight = new DateTimeOffset(time.GetUtcNow().UtcDateTime.Date, TimeSpan.Zero);
        var calls = await mediator.Send(new ListToolInvocations.Query(null, From: midnight, Limit: CountLimit), ct);
        if (!calls.IsSuccess) return Problem(http, calls.Error!);
        var failing = await FailingChecksAsync(mediator, ct);
        if (!failing.IsSuccess) return Problem(http, failing.Error!);
        return Page<OverviewPage>(http, new
        {
            Integrations = Count.Of(integrations.Value),
            McpServers = Count.Of(servers.Value),
            OpenIncidents = Count.Of(incidents.Value),
            Today = today.Value.Days.Single(),
            ToolCallsToday = Count.Of(calls.Value),
            FailedToolCallsToday = calls.Value.Items.Count(c => c.Outcome is not ("completed" or "tool_error")),
            Failing = failing.Value,
        });
    }

    /// <summary>What its last health check found failing: MCP servers unreachable or degraded, LLM integrations and datasources failing.</summary>
    private static async Task<Result<List<FailingCheck>>> FailingChecksAsync(IMediator mediator, CancellationToken ct)
    {
        const int Shown = 10;
        var found = new List<FailingCheck>();
        foreach (var status in new[] { "unreachable", "degraded" })
        {
            var servers = await mediator.Send(new ListMcpServers.Query(status, Limit: Shown), ct);
            if (!servers.IsSuccess) return servers.Error!;
            found.AddRange(servers.Value.Items.Select(s => new FailingCheck("MCP server", s.Name, $"{Root}/mcp-servers/{s.Id}", s.Status, s.HealthDetail, s.LastHealthCheckAt)));
        }
        var integrations = await mediator.Send(new QueryIntegrations.Query(Health: "failing", Limit: Shown), ct);
        if (!integrations.IsSuccess) return integrations.Error!;
        found.AddRange(integrations.Value.Items.Select(i => new FailingCheck("LLM integration", i.Name, $"{Root}/integrations", i.Health, i.HealthMessage, i.HealthCheckedAt)));
        var datasources = await mediator.Send(new Features.Datasources.ListDatasources.Query(Status: "failing", Limit: Shown), ct);
        if (!datasources.IsSuccess) return datasources.Error!;
        found.AddRange(datasources.Value.Items.Select(d => new FailingCheck("Datasource", d.Name, $"{Root}/datasources/{d.Id}", d.Status, d.StatusMessage, d.TestedAt)));
        return found;
    }

    private static async Task<IResult> ServerAsync(Guid id, string? cursor, HttpContext http, IMediator mediator)
    {
        var server = await mediator.Send(new GetMcpServer.Query(id), http.RequestAborted);
        if (!server.IsSuccess) return Problem(http, server.Error!);
        return Show(http, await mediator.Send(new ListMcpServerTools.Query(id, Limit: PageSize, Cursor: cursor), http.RequestAborted),
            tools => Page<ServerPage>(http, new { Server = server.Value, Tools = tools, Cursor = cursor }));
    }

    /// <summary>A tool's page; after a call from its form, with the call's answer (or problem) and the arguments sent.</summary>
    private static async Task<IResult> ToolAsync(HttpContext http, IMediator mediator, Guid id, Guid toolId, Result<InvokeMcpTool.Response>? called,
        IFormCollection? form)
    {
        var server = await mediator.Send(new GetMcpServer.Query(id), http.RequestAborted);
        if (!server.IsSuccess) return Problem(http, server.Error!);
        var drift = await mediator.Send(new GetMcpToolDrift.Query(id, toolId), http.RequestAborted);
        if (!drift.IsSuccess) return Problem(http, drift.Error!);
        var page = Page<ToolPage>(http, new
        {
            Server = server.Value,
            Drift = drift.Value,
            Called = called is { IsSuccess: true } ? called.Value : null,
            CallProblem = called is { IsSuccess: false } ? called.Error : null,
            Form = form,
        });
        if (called is { IsSuccess: false }) page.StatusCode = called.Error!.Status;
        return page;
    }

    private static async Task<IResult> AuditAsync(HttpContext http, IMediator mediator, AuditFilter filter, string? cursor, VerifyAuditChain.Response? verified)
    {
        var range = filter.Range();
        if (!range.IsSuccess) return Problem(http, range.Error!);
        var query = new ListAuditEvents.Query(filter.Action, filter.SubjectType, filter.SubjectId, range.Value.From, range.Value.To, PageSize, cursor, filter.RunId);
        return Show(http, await mediator.Send(query, http.RequestAborted),
            events => Page<AuditPage>(http, new { Events = events, Filter = filter, Cursor = cursor, Verified = verified }));
    }

    private static async Task<IResult> IncidentActionAsync(HttpContext http, Task<Result<Incident.Response>> action)
    {
        return After(http, await action, $"{Root}/incidents?status=all");
    }

    private static IResult Show<T>(HttpContext http, Result<T> result, Func<T, IResult> page) =>
        result.IsSuccess ? page(result.Value) : Problem(http, result.Error!);

    /// <summary>The failure as a page: its status, and the problem's title and detail (and field errors) for the person.</summary>
    private static RazorComponentResult<ProblemPage> Problem(HttpContext http, Error error)
    {
        var page = Page<ProblemPage>(http, new { Problem = error });
        page.StatusCode = error.Status;
        return page;
    }

    private static RazorComponentResult<ProblemPage> CsrfRefused()
    {
        var page = Page<ProblemPage>(new
        {
            Problem = new Error("csrf_token_invalid", 400, "The form's security token is missing or not valid.",
                "Reload the page and send the form again; forms are accepted only from the console's own pages."),
        });
        page.StatusCode = StatusCodes.Status400BadRequest;
        return page;
    }

    private static RazorComponentResult<TPage> Page<TPage>(HttpContext http, object parameters)
        where TPage : Microsoft.AspNetCore.Components.IComponent
    {
        var values = new Dictionary<string, object?> { ["View"] = http.Items[typeof(ConsoleView)] };
        foreach (var property in parameters.GetType().GetProperties()) values[property.Name] = property.GetValue(parameters);
        return new RazorComponentResult<TPage>(values);
    }

    private static RazorComponentResult<TPage> Page<TPage>(object parameters) where TPage : Microsoft.AspNetCore.Components.IComponent =>
        new(parameters);

    /// <summary>After a form post: back to a page (303, so a reload does not send the form again), or the problem.</summary>
    private static IResult After<T>(HttpContext http, Result<T> result, string location) => After(http, result, _ => location);

    private static IResult After<T>(HttpContext http, Result<T> result, Func<T, string> location) =>
        result.IsSuccess ? new SeeOtherResult(location(result.Value)) : Problem(http, result.Error!);

    private sealed class SeeOtherResult(string location) : IResult
    {
        public Task ExecuteAsync(HttpContext http)
        {
            http.Response.StatusCode = StatusCodes.Status303SeeOther;
            http.Response.Headers.Location = location;
            return Task.CompletedTask;
        }
    }
}

/// <summary>What every signed-in page knows: who is looking (their scopes decide which buttons exist) and the form token.</summary>
public sealed record ConsoleView(Caller Caller, AntiforgeryTokenSet Csrf, string Path)
{
    public const string CsrfField = "csrf";

    public bool CanWrite => Caller.Has(Scopes.Write);

    public bool CanInvoke => Caller.Has(Scopes.Invoke);

    public bool CanAdmin => Caller.Has(Scopes.Admin);
}

/// <summary>Something whose last health check failed, for the overview: what it is, where its page is, and what the check said.</summary>
public sealed record FailingCheck(string Kind, string Name, string Href, string Status, string? Message, DateTimeOffset? CheckedAt);

/// <summary>A count read off the first page of a list: exact below the page size, "N+" when there is more.</summary>
public sealed record Count(int Value, bool More)
{
    public static Count Of<T>(Page<T> page) => new(page.Items.Count, page.NextCursor is not null);

    public override string ToString() => More ? $"{Value}+" : Value.ToString(System.Globalization.CultureInfo.InvariantCulture);
}
