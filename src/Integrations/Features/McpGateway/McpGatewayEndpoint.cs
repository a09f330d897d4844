using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Integrations.Common;
using Integrations.Features.Connectors;
using Integrations.Features.McpServers;
using Integrations.Infrastructure.Http;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using ModelContextProtocol;
using ModelContextProtocol.Protocol;
using ModelContextProtocol.Server;

namespace Integrations.Features.McpGateway;

/// <summary>
/// The MCP server at <c>/mcp</c>: <c>tools/list</c> and <c>tools/call</c> of the official SDK, answered by sending
/// <see cref="ListGatewayTools.Query"/> and, for the tool <see cref="GatewayToolResolver"/> finds by name,
/// <see cref="InvokeMcpTool.Command"/> (tools.invoke itself) through the mediator, as the REST routes do, with the HTTP request's services: the caller the API key set is the
/// one the mediator sees, in a session as without one.
/// </summary>
public static class McpGatewayEndpoint
{
    public const string Path = "/mcp";

    /// <summary>Tools per <c>tools/list</c> page.</summary>
    public const int PageSize = 100;

    /// <summary>The <c>_meta</c> key of a <c>tools/call</c> that carries the run id (the <c>X-Run-Id</c> header is the other way).</summary>
    public const string RunIdMetaKey = "integrations/run_id";

    public const string RunIdHeader = "X-Run-Id";

    /// <summary>The <c>_meta</c> key of an <c>isError</c> result that the gateway made: code, rule, retry-after, invocation id.</summary>
    public const string ErrorMetaKey = "integrations/error";

    public static async ValueTask<ListToolsResult> ListToolsAsync(RequestContext<ListToolsRequestParams> context, CancellationToken ct)
    {
        var services = ServicesOf(context);
        var result = await services.GetRequiredService<IMediator>().Send(new ListGatewayTools.Query(PageSize, context.Params?.Cursor, VirtualServerOf(services)), ct);
        if (!result.IsSuccess) throw ProtocolError(result.Error!);
        return new ListToolsResult
        {
            Tools = result.Value.Items.Select(ToMcpTool).ToList(),
            NextCursor = result.Value.NextCursor,
        };
    }

    public static async ValueTask<CallToolResult> CallToolAsync(RequestContext<CallToolRequestParams> context, CancellationToken ct)
    {
        var parameters = context.Params ?? throw new McpProtocolException("tools/call needs params.", McpErrorCode.InvalidParams);
        var services = ServicesOf(context);
        var arguments = parameters.Arguments is null
            ? default
            : JsonSerializer.SerializeToElement(parameters.Arguments, McpJsonUtilities.DefaultOptions);
        var tool = await services.GetRequiredService<GatewayToolResolver>().ResolveAsync(parameters.Name, VirtualServerOf(services), ct);
        if (!tool.IsSuccess)
        {
            if (tool.Error!.Code == "not_found") throw new McpProtocolException($"Unknown tool: '{parameters.Name}'.", McpErrorCode.InvalidParams);
            throw ProtocolError(tool.Error);
        }
        Error error;
        if (tool.Value.IsConnectionAction)
        {
            var action = new InvokeConnection.Command(tool.Value.ServerId, tool.Value.ToolName, arguments, RunIdOf(parameters, services));
            var answered = await services.GetRequiredService<IMediator>().Send(action, ct);
            if (answered.IsSuccess) return ToMcpResult(answered.Value);
            error = answered.Error!;
        }
        else
        {
            var progress = parameters.ProgressToken is { } token ? new ProgressRelay(context.Server, token) : null;
            var command = new InvokeMcpTool.Command(tool.Value.ServerId, tool.Value.ToolId, arguments, RunIdOf(parameters, services), Progress: progress);
            var result = await services.GetRequiredService<IMediator>().Send(command, ct);
            if (progress is not null) await progress.FlushAsync();
            if (result.IsSuccess) return ToMcpResult(result.Value);
            error = result.Error!;
        }

        // Only what the client got wrong in the protocol is a JSON-RPC error; whatever the model can act on is a tool result.
        if (error.Code == "not_found") throw new McpProtocolException($"Unknown tool: '{parameters.Name}'.", McpErrorCode.InvalidParams);
        if (error.Code is "unauthenticated" or "forbidden") throw ProtocolError(error);
        return new CallToolResult
        {
            IsError = true,
            Content = [new TextContentBlock { Text = Explain(error) }],
            Meta = new JsonObject { [ErrorMetaKey] = ErrorFacts(error) },
        };
    }

    /// <summary>
    /// The upstream's progress, passed on under the client's own token on the response stream of its request (which
    /// stateless mode allows: the notification belongs to a request still being answered).
    /// </summary>
    private sealed class ProgressRelay(McpSession session, ProgressToken token) : IProgress<ProgressNotificationValue>
    {
        private readonly List<Task> _sent = [];

        public void Report(ProgressNotificationValue value)
        {
            lock (_sent) _sent.Add(session.NotifyProgressAsync(token, value));
        }

        /// <summary>Lets what was reported go out before the result ends the response stream (the upstream's SDK hands
        /// notifications over concurrently, so one that comes after the result is not relayed).</summary>
        public async Task FlushAsync()
        {
            Task[] sent;
            lock (_sent) sent = [.. _sent];
            try
            {
                await Task.WhenAll(sent).WaitAsync(TimeSpan.FromSeconds(1));
            }
            catch (Exception e) when (e is TimeoutException or IOException or OperationCanceledException or InvalidOperationException)
            {
                // Progress is advisory: a client that went away or a slow stream does not change the call's result.
            }
        }
    }

    /// <summary>
    /// <c>POST /tools/{name}/invoke</c>: <c>tools.invoke</c> by gateway name, the same command as the route by ids; it
    /// answers as that route does (403/429/400 problems with the rule), and 404 for a name the tenant has no tool under.
    /// </summary>
    public static void MapInvokeByName(RouteGroupBuilder group) =>
        group.MapPost("/{name}/invoke", async (string name, InvokeMcpTool.Body body, GatewayToolResolver tools, IMediator mediator, HttpContext http) =>
            {
                var tool = await tools.ResolveAsync(name, null, http.RequestAborted);
                if (!tool.IsSuccess) return tool.Error!.ToHttp(http);
                if (tool.Value.IsConnectionAction)
                {
                    var action = new InvokeConnection.Command(tool.Value.ServerId, tool.Value.ToolName, body.Arguments ?? default, body.RunId);
                    return (await mediator.Send(action, http.RequestAborted)).ToHttp(http);
                }
                var command = new InvokeMcpTool.Command(tool.Value.ServerId, tool.Value.ToolId, body.Arguments ?? default, body.RunId, body.TimeoutMs);
                return (await mediator.Send(command, http.RequestAborted)).ToHttp(http);
            })
            .WithName("tools.invoke_by_name")
            .WithSummary("Call a tool by its gateway name (<server>__<tool>, as GET /tools and /mcp name it): the same governed tools.invoke as the route by ids; a connection's action (<connection>__<action>) is connections.invoke.")
            .Produces<InvokeMcpTool.Response>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status403Forbidden)
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status429TooManyRequests)
            .ProducesProblem(StatusCodes.Status502BadGateway)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .ProducesProblem(StatusCodes.Status504GatewayTimeout);

    /// <summary>
    /// The HTTP request's services, which hold the caller its API key set. The SDK's own are the request's only when
    /// it serves statelessly; in a session it makes a scope of the application's for each message, while the message
    /// still runs in its request's execution context (so the request is the accessor's).
    /// </summary>
    internal static IServiceProvider ServicesOf<TParams>(RequestContext<TParams> context) =>
        context.Services!.GetService<IHttpContextAccessor>()?.HttpContext?.RequestServices ?? context.Services!;

    /// <summary>The <c>{virtualServer}</c> of <c>/mcp/{virtualServer}</c>; null on <c>/mcp</c> itself.</summary>
    internal static string? VirtualServerOf(IServiceProvider services) =>
        services.GetService<IHttpContextAccessor>()?.HttpContext?.GetRouteValue(VirtualServerRouteValue) as string;

    public const string VirtualServerRouteValue = "virtualServer";

    private static string? RunIdOf(CallToolRequestParams parameters, IServiceProvider services)
    {
        if (parameters.Meta?[RunIdMetaKey] is JsonValue value && value.TryGetValue<string>(out var fromMeta)) return fromMeta;
        var header = services.GetService<IHttpContextAccessor>()?.HttpContext?.Request.Headers[RunIdHeader].ToString();
        return string.IsNullOrEmpty(header) ? null : header;
    }

    private static Tool ToMcpTool(ListGatewayTools.Response tool) => new()
    {
        Name = tool.Name,
        Title = tool.Title,
        Description = tool.Description,
        InputSchema = tool.InputSchema,
        OutputSchema = tool.OutputSchema,
        Annotations = tool.Annotations?.Deserialize<ToolAnnotations>(McpJsonUtilities.DefaultOptions),
    };

    /// <summary>A connection action's output, as text for any client and as structured content for those that read it.</summary>
    private static CallToolResult ToMcpResult(InvokeConnection.Response response) => new()
    {
        Content = [new TextContentBlock { Text = response.Output.GetRawText() }],
        StructuredContent = response.Output.ValueKind == JsonValueKind.Object ? response.Output : null,
    };

    private static CallToolResult ToMcpResult(InvokeMcpTool.Response response) => new()
    {
        Content = response.Content.Deserialize<List<ContentBlock>>(McpJsonUtilities.DefaultOptions) ?? [],
        StructuredContent = response.StructuredContent,
        IsError = response.IsError ? true : null,
    };

    /// <summary>What went wrong, the rule, and what to do next, in words a model can act on.</summary>
    internal static string Explain(Error error)
    {
        var text = new StringBuilder(error.Title);
        if (error.Detail is { } detail) text.Append(' ').Append(detail);
        if (error.FieldErrors is { Count: > 0 } fields)
        {
            text.Append(" Fix the arguments:");
            foreach (var (field, messages) in fields) text.Append(' ').Append(field).Append(": ").Append(string.Join(" ", messages));
        }
        if (Extension(error, "rule") is { } rule) text.Append(" Rule: ").Append(rule).Append('.');
        if (Extension(error, "retry_after_seconds") is { } retry) text.Append(" Retry after ").Append(retry).Append(" s.");
        text.Append(" Code: ").Append(error.Code).Append('.');
        if (Extension(error, "invocation_id") is { } invocation) text.Append(" Invocation: ").Append(invocation).Append('.');
        return text.ToString();
    }

    private static JsonObject ErrorFacts(Error error)
    {
        var facts = new JsonObject { ["code"] = error.Code, ["status"] = error.Status };
        foreach (var key in (string[])["rule", "retry_after_seconds", "invocation_id"])
        {
            if (Extension(error, key) is { } value) facts[key] = value;
        }
        return facts;
    }

    private static string? Extension(Error error, string key) =>
        error.Extensions is { } extensions && extensions.TryGetValue(key, out var value) && value is not null
            ? Convert.ToString(value, CultureInfo.InvariantCulture)
            : null;

    internal static McpProtocolException ProtocolError(Error error) => error.Code switch
    {
        "validation_failed" or "not_found" => new McpProtocolException(Explain(error), McpErrorCode.InvalidParams),
        "unauthenticated" or "forbidden" => new McpProtocolException(Explain(error), McpErrorCode.InvalidRequest),
        _ => new McpProtocolException(Explain(error), McpErrorCode.InternalError),
    };
}
