using System.Text.Json;
using FluentValidation;
using Integrations.Common;
using Integrations.Features.Connectors.Adapters;
using Integrations.Infrastructure.Http;
using Integrations.Pipeline.Governance;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.Connectors;

/// <summary>
/// connections.invoke (the contract's <i>fetch</i> for read actions, <i>push</i> for write ones): a governed call
/// (<see cref="ConnectionCall"/> is its kind: target, rules, record, incident). The stage records requested, decides,
/// resolves the connection's credential and records started; this handler only has the connector's adapter perform the
/// action. The MCP gateway's <c>tools/call</c> of <c>&lt;connection&gt;__&lt;action&gt;</c> sends this same command.
/// </summary>
public static class InvokeConnection
{
    public sealed record Body(JsonElement? Arguments = null, string? RunId = null);

    public sealed record Command(Guid ConnectionId, string Action, JsonElement Arguments = default, string? RunId = null)
        : IOperation<Response>, IGovernedCall
    {
        private string? _inputHash;

        public static string Operation => "connections.invoke";
        public static string Scope => Scopes.Invoke;

        public string ArgumentsJson => Arguments.ValueKind == JsonValueKind.Object ? Arguments.GetRawText() : "{}";

        /// <summary>SHA-256 of the arguments as canonical JSON: the trail and the record prove what was sent without holding it.</summary>
        public string InputHash => _inputHash ??= CanonicalJson.Sha256(
            Arguments.ValueKind == JsonValueKind.Object ? Arguments : JsonDocument.Parse("{}").RootElement);
    }

    /// <summary>Failures answer as problems carrying the invocation id.</summary>
    public sealed record Response(Guid InvocationId, string Connection, string Action, string Access, double DurationMs, JsonElement Output);

    internal sealed class Validator : AbstractValidator<Command>
    {
        public Validator()
        {
            RuleFor(x => x.Action).NotEmpty().MaximumLength(63);
            RuleFor(x => x.Arguments).Must(a => a.ValueKind is JsonValueKind.Object or JsonValueKind.Undefined or JsonValueKind.Null)
                .WithMessage("Arguments must be a JSON object.");
            RuleFor(x => x.RunId).MaximumLength(200);
        }
    }

    internal sealed class Handler(GovernedCallContext calls, ConnectorAdapters adapters) : IRequestHandler<Command, Result<Response>>
    {
        public async Task<Result<Response>> Handle(Command request, CancellationToken ct)
        {
            var call = calls.Current;
            var target = call.TargetAs<ConnectionCall.Target>();
            var arguments = request.Arguments.ValueKind == JsonValueKind.Object ? request.Arguments : JsonDocument.Parse("{}").RootElement;
            // An OAuth access token the service refused (401) is renewed once and the action tried once more.
            var result = await call.WithRenewalAsync(credential => adapters.For(target.Manifest.Connector).InvokeAsync(
                new ActionCall(call.Id, target.Endpoint(call.Caller.TenantId), target.Action, arguments, credential), ct), ct);
            if (!result.IsSuccess) return result.Error!;
            call.Report(new CallOutput(OutputHash: CanonicalJson.Sha256(result.Value.Output), Facts: result.Value.Facts));
            return new Response(call.Id, target.Connection.Name, target.Action.Name, target.Action.Access, call.Duration, result.Value.Output);
        }
    }

    /// <summary>A webhook connection's <c>redeliver</c> action under the delivery's own route.</summary>
    internal static void MapRedeliver(RouteGroupBuilder group) =>
        group.MapPost("/{id:guid}/deliveries/{deliveryId:guid}/redeliver", async (Guid id, Guid deliveryId, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id, "redeliver", JsonSerializer.SerializeToElement(new { delivery_id = deliveryId })),
                    http.RequestAborted)).ToHttp(http))
            .WithName("connections.redeliver")
            .WithSummary("Send a logged delivery again (freshly signed): the connection's redeliver action, a governed call.")
            .Produces<Response>()
            .ProducesProblem(StatusCodes.Status403Forbidden)
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status502BadGateway);

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPost("/{id:guid}/actions/{action}/invoke", async (Guid id, string action, Body? body, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id, action, body?.Arguments ?? default, body?.RunId), http.RequestAborted)).ToHttp(http))
            .WithName(Command.Operation)
            .WithRequestExample(new Body(JsonSerializer.SerializeToElement(new { id = "42" }), "run-1"))
            .WithSummary("Call a connection's action under governance: policy with the action's risk, rate limits, input schema, the credential from the vault, audit, an invocation record, incidents.")
            .Produces<Response>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status403Forbidden)
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status429TooManyRequests)
            .ProducesProblem(StatusCodes.Status502BadGateway)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .ProducesProblem(StatusCodes.Status504GatewayTimeout);
}
