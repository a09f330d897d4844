using System.Text.Json;
using FluentValidation;
using Integrations.Common;
using Integrations.Infrastructure.Http;
using Integrations.Infrastructure.Mcp;
using Integrations.Infrastructure.Vault;
using Integrations.Pipeline.Governance;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using ModelContextProtocol;
using ModelContextProtocol.Protocol;

namespace Integrations.Features.McpServers;

/// <summary>
/// tools.invoke: a governed call (<see cref="ToolCall"/> is its kind: target, rules, record, incident). The stage
/// records requested, decides, resolves the server's credential and records started; this handler only makes the
/// <c>tools/call</c> over the pooled session with a deadline, never retried once sent.
/// </summary>
public static class InvokeMcpTool
{
    /// <summary>What an answered call was; the other outcomes of a call (failed, timeout, denied) answer as problems.</summary>
    public static readonly string[] Outcomes = [CallOutput.Completed, "tool_error"];

    public sealed record Body(JsonElement? Arguments = null, string? RunId = null, int? TimeoutMs = null);

    /// <param name="Progress">Hears the server's progress notifications (in-process callers and the MCP gateway; not part of the REST body).</param>
    public sealed record Command(
        Guid ServerId, Guid ToolId, JsonElement Arguments = default, string? RunId = null, int? TimeoutMs = null,
        IProgress<ProgressNotificationValue>? Progress = null)
        : IOperation<Response>, IGovernedCall
    {
        private string? _inputHash;

        public static string Operation => "tools.invoke";
        public static string Scope => Scopes.Invoke;

        public string ArgumentsJson => Arguments.ValueKind == JsonValueKind.Object ? Arguments.GetRawText() : "{}";

        /// <summary>SHA-256 of the arguments as canonical JSON: the trail and the record prove what was sent without holding it.</summary>
        public string InputHash => _inputHash ??= CanonicalJson.Sha256(
            Arguments.ValueKind == JsonValueKind.Object ? Arguments : JsonDocument.Parse("{}").RootElement);
    }

    /// <summary>Failures answer as problems carrying the invocation id.</summary>
    public sealed record Response(
        Guid InvocationId, [OneOf(typeof(InvokeMcpTool), nameof(Outcomes))] string Outcome, double DurationMs, JsonElement Content, JsonElement? StructuredContent, bool IsError);

    internal sealed class Validator : AbstractValidator<Command>
    {
        public Validator(McpOptions options)
        {
            RuleFor(x => x.Arguments).Must(a => a.ValueKind is JsonValueKind.Object or JsonValueKind.Undefined or JsonValueKind.Null)
                .WithMessage("Arguments must be a JSON object.");
            RuleFor(x => x.RunId).MaximumLength(200);
            RuleFor(x => x.TimeoutMs).InclusiveBetween(1, (int)options.CallTimeout.TotalMilliseconds)
                .WithMessage($"Timeout must be between 1 and {(int)options.CallTimeout.TotalMilliseconds} ms.");
        }
    }

    internal sealed class Handler(GovernedCallContext calls, McpSessions sessions) : IRequestHandler<Command, Result<Response>>
    {
        public async Task<Result<Response>> Handle(Command request, CancellationToken ct)
        {
            var call = calls.Current;
            var target = call.TargetAs<ToolCall.Target>();
            var endpoint = new McpEndpoint(call.Caller.TenantId, target.ServerId, new Uri(target.Url), Auth: null, target.Transport);
            var arguments = request.Arguments.ValueKind == JsonValueKind.Object
                ? request.Arguments.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.Clone())
                : new Dictionary<string, JsonElement>();
            var timeout = request.TimeoutMs is { } ms ? TimeSpan.FromMilliseconds(ms) : (TimeSpan?)null;

            Task<Result<CallToolResult>> CallAsync(ResolvedCredential? credential)
            {
                var auth = McpServer.AuthFrom(credential, target.AuthHeader);
                return auth.IsSuccess
                    ? sessions.CallToolAsync(endpoint with { Auth = auth.Value }, target.ToolName, arguments, timeout, ct, request.Progress)
                    : Task.FromResult<Result<CallToolResult>>(auth.Error!);
            }

            // An OAuth access token the server refused (401) is renewed once and the call tried once more.
            var result = await call.WithRenewalAsync(CallAsync, ct);
            if (!result.IsSuccess) return result.Error!;

            var payload = JsonSerializer.SerializeToElement(result.Value, McpJsonUtilities.DefaultOptions);
            var isError = result.Value.IsError == true;
            var outcome = isError ? Outcomes[1] : CallOutput.Completed;
            call.Report(new CallOutput(outcome, CanonicalJson.Sha256(payload), isError ? FirstText(result.Value) : null,
                Output: call.KeepsEvidence ? payload : null));
            return new Response(call.Id, outcome, call.Duration,
                payload.TryGetProperty("content", out var content) ? content.Clone() : JsonDocument.Parse("[]").RootElement.Clone(),
                payload.TryGetProperty("structuredContent", out var structured) ? structured.Clone() : null,
                isError);
        }

        private static string FirstText(CallToolResult result) =>
            result.Content.OfType<TextContentBlock>().FirstOrDefault()?.Text is { } text ? (text.Length > 500 ? text[..500] : text) : "The tool reported an error.";
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPost("/{id:guid}/tools/{toolId:guid}/invoke", async (Guid id, Guid toolId, Body body, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id, toolId, body.Arguments ?? default, body.RunId, body.TimeoutMs), http.RequestAborted)).ToHttp(http))
            .WithName(Command.Operation)
            .WithRequestExample(new Body(JsonSerializer.SerializeToElement(new { message = "hello" }), RunId: "run-1", TimeoutMs: 5000))
            .WithSummary("Call a tool under governance: policy, rate limits, input schema, the server's credential from the vault, audit, incidents.")
            .Produces<Response>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status403Forbidden)
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status429TooManyRequests)
            .ProducesProblem(StatusCodes.Status502BadGateway)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .ProducesProblem(StatusCodes.Status504GatewayTimeout);
}
