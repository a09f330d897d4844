using Dapper;
using FluentValidation;
using Integrations.Common;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using Integrations.Infrastructure.Mcp;
using Integrations.Infrastructure.Network;
using Integrations.Infrastructure.Vault;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Npgsql;

namespace Integrations.Features.McpServers;

/// <summary>
/// mcp_servers.update: change a server in place (name, URL, credential, auth header) instead of deleting it with its
/// tools, approvals and history. A new URL passes the egress guard; the server is then asked again with what it will
/// be called with from now on (initialize, tools/list), and the answer is stored as a discovery is
/// (<see cref="ToolDiscovery"/>): tools whose definition did not change keep their approval, enabled state and risk
/// override; changed ones are drifted until approved. Nothing is stored unless that answer came back; the pooled
/// session (and its circuit) is dropped, so the next call connects to the server as it is now.
/// </summary>
public static class UpdateMcpServer
{
    /// <summary>
    /// Fields left null keep their value. <paramref name="ExposeResources"/> / <paramref name="ExposePrompts"/>: whether
    /// the MCP gateway passes the server's resources / prompts through <c>/mcp</c>.
    /// </summary>
    public sealed record Body(string? Name = null, string? Url = null, string? CredentialRef = null, string? AuthHeader = null,
        bool? ExposeResources = null, bool? ExposePrompts = null);

    public sealed record Command(Guid Id, Body Changes) : IOperation<ToolChanges>, IAudited
    {
        public static string Operation => "mcp_servers.update";
        public static string Scope => Scopes.Write;
    }

    internal sealed class Validator : AbstractValidator<Command>
    {
        public Validator(CallerContext caller)
        {
            RuleFor(x => x.Changes).NotNull().WithMessage("A body with the fields to change is required.");
            When(x => x.Changes is not null, () =>
            {
                RuleFor(x => x.Changes.Name).ValidServerName().OverridePropertyName("Name").When(x => x.Changes.Name is not null);
                RuleFor(x => x.Changes.Url).ValidServerUrl().OverridePropertyName("Url").When(x => x.Changes.Url is not null);
                RuleFor(x => x.Changes.CredentialRef).ValidServerCredentialRef(() => caller.TenantId).OverridePropertyName("CredentialRef")
                    .When(x => x.Changes.CredentialRef is not null);
                RuleFor(x => x.Changes.AuthHeader).ValidAuthHeader().OverridePropertyName("AuthHeader");
                RuleFor(x => x.Changes)
                    .Must(c => c.Name is not null || c.Url is not null || c.CredentialRef is not null || c.AuthHeader is not null
                               || c.ExposeResources is not null || c.ExposePrompts is not null)
                    .OverridePropertyName("Body")
                    .WithMessage("Give at least one of name, url, credential_ref, auth_header, expose_resources, expose_prompts.");
            });
        }
    }

    /// <summary>
    /// As registration does, the network work happens with no transaction open. A new credential is attached (its grant
    /// committed, since the resolver reads committed grants) before the server is asked with it; if the update then
    /// fails, the grant the server held before is put back, so a failed update leaves the server as it was.
    /// </summary>
    internal sealed class Handler(
        TenantSession session, AuditTrail audit, SsrfGuard guard, McpSessions sessions, CredentialGrants grants, CredentialResolver resolver)
        : IRequestHandler<Command, Result<ToolChanges>>
    {
        private const string DuplicateSql = """
            SELECT EXISTS (SELECT 1 FROM mcp_servers WHERE tenant_id = @TenantId AND url = @Url AND id <> @Id AND deleted_at IS NULL)
            """;

        private const string UpdateSql = """
            UPDATE mcp_servers SET name = @Name, url = @Url, credential_ref = @CredentialRef, auth_header = @AuthHeader,
                expose_resources = coalesce(@ExposeResources, expose_resources), expose_prompts = coalesce(@ExposePrompts, expose_prompts), updated_at = now()
            WHERE tenant_id = @TenantId AND id = @Id AND deleted_at IS NULL
            """;

        public async Task<Result<ToolChanges>> Handle(Command request, CancellationToken ct)
        {
            var changes = request.Changes;
            var before = await McpServer.FindAsync(session, request.Id, ct);
            if (before is null) return Error.NotFound("MCP server");

            var url = changes.Url is null ? new Uri(before.Url) : new Uri(changes.Url);
            var after = new
            {
                Name = changes.Name ?? before.Name,
                Url = url.AbsoluteUri,
                CredentialRef = changes.CredentialRef ?? before.CredentialRef,
                AuthHeader = changes.AuthHeader ?? before.AuthHeader,
            };
            var urlChanged = after.Url != before.Url;
            var credentialChanged = after.CredentialRef != before.CredentialRef;
            if (urlChanged)
            {
                var checkedUrl = await guard.CheckAsync(url, ct);
                if (!checkedUrl.IsSuccess) return checkedUrl.Error!;
                var connection = await session.ConnectionAsync(ct);
                if (await connection.ExecuteScalarAsync<bool>(new CommandDefinition(DuplicateSql, new { session.TenantId, after.Url, request.Id }, cancellationToken: ct)))
                {
                    return Duplicate(after.Url);
                }
            }

            var accessor = new CredentialAccessor(CredentialAccessor.McpServer, request.Id);
            if (credentialChanged)
            {
                if (await grants.AttachAsync(accessor, after.CredentialRef, ct, destinationHost: url.IdnHost) is { } attachError) return attachError;
                await session.CommitAsync(ct);
            }
            // A new URL sends the credential already attached to a new destination: that is attaching it again.
            else if (urlChanged && after.CredentialRef is not null
                     && await grants.MayAttachAsync(accessor, after.CredentialRef, url.IdnHost, ct) is { } moveError)
            {
                return moveError;
            }
            await session.RollbackAsync();

            McpServerAuth? auth = null;
            if (after.CredentialRef is { } reference)
            {
                var resolved = await resolver.ResolveAsync(accessor, reference, Command.Operation, ct, destinationHost: url.IdnHost);
                var authResult = resolved.IsSuccess ? McpServer.AuthFrom(resolved.Value, after.AuthHeader) : resolved.Error!;
                if (!authResult.IsSuccess) return await UndoAsync(accessor, credentialChanged, before.CredentialRef, authResult.Error!, ct);
                auth = authResult.Value;
            }

            var described = await sessions.DescribeAsync(url, auth, ct);
            if (!described.IsSuccess) return await UndoAsync(accessor, credentialChanged, before.CredentialRef, described.Error!, ct);

            if (await McpServer.FindAsync(session, request.Id, ct, forUpdate: true) is null)
            {
                return await UndoAsync(accessor, credentialChanged, before.CredentialRef, Error.NotFound("MCP server"), ct);
            }
            var writer = await session.ConnectionAsync(ct);
            try
            {
                await writer.ExecuteAsync(new CommandDefinition(UpdateSql, new
                {
                    session.TenantId,
                    request.Id,
                    after.Name,
                    after.Url,
                    after.CredentialRef,
                    after.AuthHeader,
                    changes.ExposeResources,
                    changes.ExposePrompts,
                }, cancellationToken: ct));
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.UniqueViolation)
            {
                return await UndoAsync(accessor, credentialChanged, before.CredentialRef, Duplicate(after.Url), ct);
            }
            var stored = await ToolDiscovery.StoreAsync(session, sessions, request.Id, described.Value, ct);
            if (!stored.IsSuccess) return await UndoAsync(accessor, credentialChanged, before.CredentialRef, stored.Error!, ct);
            session.AfterCommit(() => sessions.Close(session.TenantId, request.Id));

            var response = stored.Value;
            audit.Record(McpServer.SubjectType, request.Id.ToString(), new
            {
                Changed = new
                {
                    changes.Name,
                    Url = urlChanged ? after.Url : null,
                    CredentialRef = changes.CredentialRef is null ? null : CredentialReference.Describe(changes.CredentialRef),
                    changes.AuthHeader,
                    changes.ExposeResources,
                    changes.ExposePrompts,
                },
                Added = response.Added.Select(t => new { t.Name, t.RiskLevel, t.DefinitionHash }),
                Drifted = response.Drifted.Select(d => new { d.Tool.Name, d.Changed, d.Tool.ApprovedHash, d.Tool.DefinitionHash }),
                Removed = response.Removed.Select(t => t.Name),
                Restored = response.Restored.Select(t => t.Name),
                response.Unchanged,
            });
            return response;
        }

        private static Error Duplicate(string url) =>
            Error.Conflict($"An MCP server with the URL '{url}' is already registered for this tenant.");

        /// <summary>The update failed after a new grant committed: the server gets the grant it held before back.</summary>
        private async Task<Error> UndoAsync(CredentialAccessor accessor, bool credentialChanged, string? previous, Error error, CancellationToken ct)
        {
            await session.RollbackAsync();
            if (!credentialChanged) return error;
            if (previous is null) await grants.DetachAllAsync(accessor, ct);
            else await grants.AttachAsync(accessor, previous, ct);
            await session.CommitAsync(ct);
            return error;
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPatch("/{id:guid}", async (Guid id, Body body, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id, body), http.RequestAborted)).ToHttp(http))
            .WithName(Command.Operation)
            .WithRequestExample(new Body(Url: "https://mcp.example.com/v2/mcp"))
            .WithSummary("Change an MCP server in place (name, URL, credential, auth header, expose_resources, expose_prompts): the URL is checked by the egress guard, the server asked again and its tools stored as a discovery does — unchanged tools keep their approval, changed ones drift.")
            .Produces<ToolChanges>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status403Forbidden)
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status409Conflict)
            .ProducesProblem(StatusCodes.Status422UnprocessableEntity)
            .ProducesProblem(StatusCodes.Status502BadGateway)
            .ProducesProblem(StatusCodes.Status504GatewayTimeout);
}
