using System.Text.Json;
using FluentValidation;
using Integrations.Common;
using Integrations.Features.McpServers;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using Integrations.Infrastructure.Mcp;
using Integrations.Infrastructure.Vault;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Routing;
using ModelContextProtocol;
using ModelContextProtocol.Protocol;

namespace Integrations.Features.McpGateway;

/// <summary>mcp_prompts.get: <c>prompts/get</c> of one prompt of a server that passes its prompts through; audited (argument names, not values).</summary>
public static class GetServerPrompt
{
    /// <param name="Name">The prompt's name as the server names it.</param>
    public sealed record Body(string Name, IDictionary<string, JsonElement>? Arguments = null);

    public sealed record Command(Guid ServerId, string Name, IDictionary<string, JsonElement>? Arguments = null)
        : IOperation<Response>, IAudited, INeedsCredential
    {
        public static string Operation => "mcp_prompts.get";
        public static string Scope => Scopes.Invoke;

        public CredentialAccessor CredentialAccessor => new(CredentialAccessor.McpServer, ServerId);
        public string? CredentialRef => null;
    }

    /// <param name="Messages">MCP prompt messages (role, content) as the server sent them.</param>
    public sealed record Response(string? Description, IReadOnlyList<JsonElement> Messages);

    internal sealed class Validator : AbstractValidator<Command>
    {
        public Validator() => RuleFor(x => x.Name).NotEmpty().MaximumLength(1000).WithMessage("Name is required, at most 1000 characters.");
    }

    internal sealed class Handler(TenantSession session, CredentialContext credentials, McpSessions sessions, AuditTrail audit)
        : IRequestHandler<Command, Result<Response>>
    {
        public async Task<Result<Response>> Handle(Command request, CancellationToken ct)
        {
            var asked = await PassthroughServers.AskAsync(session, credentials, sessions, request.ServerId, PassthroughServers.Kind.Prompts,
                (client, token) => client.GetPromptAsync(new GetPromptRequestParams { Name = request.Name, Arguments = request.Arguments }, token), ct);
            if (!asked.IsSuccess) return asked.Error!;
            var (got, serverName) = asked.Value;
            audit.Record(McpServer.SubjectType, request.ServerId.ToString(), new
            {
                Server = serverName,
                Prompt = request.Name,
                Arguments = request.Arguments?.Keys.Order(StringComparer.Ordinal).ToArray() ?? [],
                Messages = got.Messages.Count,
            });
            return new Response(got.Description, got.Messages.Select(m => JsonSerializer.SerializeToElement(m, McpJsonUtilities.DefaultOptions)).ToList());
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPost("/{id:guid}/prompts/get", async (Guid id, Body body, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id, body.Name, body.Arguments), http.RequestAborted)).ToHttp(http))
            .WithName(Command.Operation)
            .WithSummary("Get one of the server's prompts (prompts/get) with its arguments, when it passes them through (expose_prompts); audited.")
            .Produces<Response>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status502BadGateway)
            .ProducesProblem(StatusCodes.Status504GatewayTimeout);
}
