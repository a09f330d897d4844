using System.Text.Json;
using Integrations.Common;
using Integrations.Features.Datasources;
using Integrations.Infrastructure.Datasources;
using MediatR;

namespace Integrations.Api.AdminConsole;

public static partial class ConsoleEndpoints
{
    /// <summary>Datasources: register, test, and their query templates (define, run with parameters, the result table).</summary>
    private static void MapDatasourcePages(RouteGroupBuilder pages)
    {
        pages.MapGet("/datasources", (string? cursor, HttpContext http, IMediator mediator) => DatasourcesAsync(http, mediator, cursor, null, null));
        pages.MapPost("/datasources", async (HttpContext http, IMediator mediator) =>
        {
            var form = new ConsoleForm(http.Request.Form);
            var command = new RegisterDatasource.Command(
                form.Text("name") ?? "",
                form.Text("host") ?? "",
                form.Text("database") ?? "",
                form.Text("username") ?? "",
                form.Text("credential_ref") ?? "",
                form.WholeNumber("port") ?? 5432,
                TlsMode: form.Text("tls_mode") ?? "verify-full",
                RowLimit: form.WholeNumber("row_limit"),
                StatementTimeoutMs: form.WholeNumber("statement_timeout_ms"));
            if (form.Problem is { } unread) return await DatasourcesAsync(http, mediator, null, unread, form.Values);
            var registered = await mediator.Send(command, http.RequestAborted);
            return registered.IsSuccess
                ? new SeeOtherResult($"{Root}/datasources/{registered.Value.Id}")
                : await DatasourcesAsync(http, mediator, null, registered.Error, form.Values);
        });
        pages.MapGet("/datasources/{id:guid}", (Guid id, string? cursor, HttpContext http, IMediator mediator) =>
            DatasourceAsync(http, mediator, id, new DatasourceView(cursor)));
        pages.MapPost("/datasources/{id:guid}/test", async (Guid id, HttpContext http, IMediator mediator) =>
            After(http, await mediator.Send(new TestDatasource.Command(id), http.RequestAborted), $"{Root}/datasources/{id}"));
        pages.MapPost("/datasources/{id:guid}/queries", async (Guid id, HttpContext http, IMediator mediator) =>
        {
            var form = new ConsoleForm(http.Request.Form);
            var command = new DefineQuery.Command(id,
                form.Text("name") ?? "",
                form.Text("sql") ?? "",
                DeclaredParameters(form),
                form.Text("description"),
                form.WholeNumber("row_limit"),
                form.WholeNumber("timeout_ms"),
                form.WholeNumber("rate_limit_per_minute"));
            if (form.Problem is { } unread) return await DatasourceAsync(http, mediator, id, new DatasourceView(DefineProblem: unread, DefineForm: form.Values));
            var defined = await mediator.Send(command, http.RequestAborted);
            return defined.IsSuccess
                ? new SeeOtherResult($"{Root}/datasources/{id}#query-{defined.Value.Name}")
                : await DatasourceAsync(http, mediator, id, new DatasourceView(DefineProblem: defined.Error, DefineForm: form.Values));
        });
        pages.MapPost("/datasources/{id:guid}/queries/{name}/run", async (Guid id, string name, HttpContext http, IMediator mediator) =>
        {
            var form = new ConsoleForm(http.Request.Form);
            var arguments = Arguments(form);
            Result<RunQuery.Response> ran = form.Problem is { } unread
                ? unread
                : await mediator.Send(new RunQuery.Command(id, name, arguments), http.RequestAborted);
            return await DatasourceAsync(http, mediator, id, new DatasourceView(Ran: name, Result: ran, RunForm: form.Values));
        });
    }

    /// <summary>What a datasource's page shows besides the datasource: a refused define, or a run's result or problem.</summary>
    private sealed record DatasourceView(
        string? Cursor = null,
        Error? DefineProblem = null,
        IFormCollection? DefineForm = null,
        string? Ran = null,
        Result<RunQuery.Response>? Result = null,
        IFormCollection? RunForm = null);

    private static async Task<IResult> DatasourcesAsync(HttpContext http, IMediator mediator, string? cursor, Error? problem, IFormCollection? form)
    {
        var list = await mediator.Send(new ListDatasources.Query(Limit: PageSize, Cursor: cursor), http.RequestAborted);
        if (!list.IsSuccess) return Problem(http, list.Error!);
        var page = Page<DatasourcesPage>(http, new { Datasources = list.Value, Cursor = cursor, Problem = problem, Form = form });
        if (problem is not null) page.StatusCode = problem.Status;
        return page;
    }

    private static async Task<IResult> DatasourceAsync(HttpContext http, IMediator mediator, Guid id, DatasourceView view)
    {
        var datasource = await mediator.Send(new GetDatasource.Query(id), http.RequestAborted);
        if (!datasource.IsSuccess) return Problem(http, datasource.Error!);
        var queries = await mediator.Send(new ListQueries.Query(id, Limit: PageSize, Cursor: view.Cursor), http.RequestAborted);
        if (!queries.IsSuccess) return Problem(http, queries.Error!);
        var page = Page<DatasourcePage>(http, new
        {
            Datasource = datasource.Value,
            Queries = queries.Value,
            view.Cursor,
            view.DefineProblem,
            view.DefineForm,
            view.Ran,
            Result = view.Result is { IsSuccess: true } ran ? ran.Value : null,
            RunProblem = view.Result is { IsSuccess: false } refused ? refused.Error : null,
            view.RunForm,
        });
        var status = view.DefineProblem?.Status ?? (view.Result is { IsSuccess: false } failed ? failed.Error!.Status : null);
        if (status is not null) page.StatusCode = status;
        return page;
    }

    /// <summary>The parameters a define form declares: one <c>name type</c> a line (e.g. <c>tier text</c>).</summary>
    private static List<Datasource.Parameter>? DeclaredParameters(ConsoleForm form)
    {
        if (form.List("parameters") is not { } lines) return null;
        var declared = new List<Datasource.Parameter>();
        foreach (var line in lines)
        {
            var parts = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length != 2)
            {
                form.Refuse("parameters", "Each line is a name and a type, e.g. 'tier text'.");
                return null;
            }
            declared.Add(new Datasource.Parameter(parts[0], parts[1]));
        }
        return declared;
    }

    /// <summary>
    /// A run form's values as the template's JSON parameters: field <c>p.NAME</c> holds the value and <c>t.NAME</c> the
    /// declared type the page showed. Text-like types are sent as strings; the others as the JSON typed (a number,
    /// true/false, an array), or as a string when it is not JSON, so the operation's own check says what it expected.
    /// Blank is not sent.
    /// </summary>
    private static Dictionary<string, JsonElement> Arguments(ConsoleForm form)
    {
        var arguments = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
        foreach (var field in form.Values.Keys.Where(k => k.StartsWith("p.", StringComparison.Ordinal)))
        {
            if (form.Text(field) is not { } text) continue;
            var name = field[2..];
            var type = form.Text("t." + name) ?? "text";
            arguments[name] = !QueryParameterTypes.IsString(type) && ParsedJson(text) is { } json ? json : JsonSerializer.SerializeToElement(text);
        }
        return arguments;
    }

    private static JsonElement? ParsedJson(string text)
    {
        try
        {
            return JsonDocument.Parse(text).RootElement.Clone();
        }
        catch (JsonException)
        {
            return null;
        }
    }
}
