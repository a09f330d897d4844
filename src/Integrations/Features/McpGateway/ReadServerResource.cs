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

/// <summary>mcp_resources.read: <c>resources/read</c> of one resource of a server that passes its resources through; audited.</summary>
public static class ReadServerResource
{
    /// <param name="Uri">The resource's URI as the server names it.</param>
    public sealed record Body(string Uri);

    public sealed record Command(Guid ServerId, string Uri) : IOperation<Response>, IAudited, INeedsCredential
    {
        public static string Operation => "mcp_resources.read";
        public static string Scope => Scopes.Invoke;

        public CredentialAccessor CredentialAccessor => new(CredentialAccessor.McpServer, ServerId);
        public string? CredentialRef => null;
    }

    /// <param name="Contents">MCP resource contents (uri, mimeType, text or blob) as the server sent them.</param>
    public sealed record Response(IReadOnlyList<JsonElement> Contents);

    internal sealed class Validator : AbstractValidator<Command>
    {
        public Validator() => RuleFor(x => x.Uri).NotEmpty().MaximumLength(8192).WithMessage("Uri is required, at most 8192 characters.");
    }

    internal sealed class Handler(TenantSession session, CredentialContext credentials, McpSessions sessions, AuditTrail audit)
        : IRequestHandler<Command, Result<Response>>
    {
        public async Task<Result<Response>> Handle(Command request, CancellationToken ct)
        {
            var asked = await PassthroughServers.AskAsync(session, credentials, sessions, request.ServerId, PassthroughServers.Kind.Resources,
                (client, token) => client.ReadResourceAsync(new ReadResourceRequestParams { Uri = request.Uri }, token), ct);
            if (!asked.IsSuccess) return asked.Error!;
            var (read, serverName) = asked.Value;
            audit.Record(McpServer.SubjectType, request.ServerId.ToString(), new
            {
                Server = serverName,
                request.Uri,
                Contents = read.Contents.Count,
            });
            return new Response(read.Contents.Select(c => JsonSerializer.SerializeToElement(c, McpJsonUtilities.DefaultOptions)).ToList());
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPost("/{id:guid}/resources/read", async (Guid id, Body body, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id, body.Uri), http.RequestAborted)).ToHttp(http))
            .WithName(Command.Operation)
            .WithSummary("Read one of the server's resources (resources/read) by its URI, when it passes them through (expose_resources); audited.")
            .Produces<Response>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status502BadGateway)
            .ProducesProblem(StatusCodes.Status504GatewayTimeout);
}
