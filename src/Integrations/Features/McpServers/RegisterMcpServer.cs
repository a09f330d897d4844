using Dapper;
using FluentValidation;
using Integrations.Common;
using Integrations.Features.Policies;
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

public static class RegisterMcpServer
{
    /// <summary>
    /// <paramref name="AuthHeader"/> names the header the resolved secret travels in (default <c>Authorization</c>,
    /// as <c>Bearer &lt;secret&gt;</c>; any other header carries the raw secret). <paramref name="ExposeResources"/> and
    /// <paramref name="ExposePrompts"/> pass the server's resources and prompts through <c>/mcp</c> (default off).
    /// </summary>
    public sealed record Command(string Name, string Url, string? CredentialRef = null, string? AuthHeader = null,
        bool? ExposeResources = null, bool? ExposePrompts = null)
        : IOperation<Response>, IAudited
    {
        public static string Operation => "mcp_servers.register";
        public static string Scope => Scopes.Write;
    }

    public sealed record Response(McpServer.Response Server, IReadOnlyList<McpTool.Response> Tools);

    internal sealed class Validator : AbstractValidator<Command>
    {
        public Validator(CallerContext caller)
        {
            RuleFor(x => x.Name).ValidServerName();
            RuleFor(x => x.Url).ValidServerUrl();
            RuleFor(x => x.CredentialRef).ValidServerCredentialRef(() => caller.TenantId).When(x => x.CredentialRef is not null);
            RuleFor(x => x.AuthHeader).ValidAuthHeader();
        }
    }

    /// <summary>
    /// The network work (SSRF check, initialize, tools/list) happens with no transaction open; the server and its
    /// tools are then written in one transaction. A tool starts enabled when the tenant's tool policy would allow it
    /// (risk within the ceiling, default medium, or on the allow list; not on the deny list), disabled otherwise. A <c>cus-vault://</c> reference is granted to the new server first
    /// (the resolver only releases granted secrets, and reads committed grants), so that grant commits on its own
    /// and is taken back if the registration fails.
    /// </summary>
    internal sealed class Handler(
        TenantSession session,
        AuditTrail audit,
        SsrfGuard guard,
        McpSessions sessions,
        CredentialGrants grants,
        CredentialResolver resolver,
        ToolPolicyStore policies) : IRequestHandler<Command, Result<Response>>
    {
        private const string ExistsSql = """
            SELECT EXISTS (SELECT 1 FROM mcp_servers WHERE tenant_id = @TenantId AND url = @Url AND deleted_at IS NULL)
            """;

        private const string InsertServerSql = """
            INSERT INTO mcp_servers (id, tenant_id, name, url, transport, credential_ref, auth_header, status, protocol_version,
                server_name, server_version, capabilities, discovered_at, expose_resources, expose_prompts)
            VALUES (@Id, @TenantId, @Name, @Url, @Transport, @CredentialRef, @AuthHeader, 'active', @ProtocolVersion,
                @ServerName, @ServerVersion, @Capabilities::jsonb, now(), @ExposeResources, @ExposePrompts)
            ON CONFLICT DO NOTHING
            RETURNING id
            """;

        public async Task<Result<Response>> Handle(Command request, CancellationToken ct)
        {
            var url = new Uri(request.Url);
            var checkedUrl = await guard.CheckAsync(url, ct);
            if (!checkedUrl.IsSuccess) return checkedUrl.Error!;

            var connection = await session.ConnectionAsync(ct);
            if (await connection.ExecuteScalarAsync<bool>(new CommandDefinition(ExistsSql, new { session.TenantId, Url = url.AbsoluteUri }, cancellationToken: ct)))
            {
                return Duplicate(url);
            }
            await session.RollbackAsync();

            var id = Ids.New();
            var accessor = new CredentialAccessor(CredentialAccessor.McpServer, id);
            var authHeader = request.AuthHeader ?? McpServerAuth.DefaultHeader;
            var granted = false;
            McpServerAuth? auth = null;
            if (request.CredentialRef is { } reference)
            {
                if (await grants.AttachAsync(accessor, reference, ct, destinationHost: url.IdnHost) is { } attachError) return attachError;
                await session.CommitAsync(ct);
                granted = true;

                var resolved = await resolver.ResolveAsync(accessor, reference, Command.Operation, ct, destinationHost: url.IdnHost);
                var authResult = resolved.IsSuccess ? McpServer.AuthFrom(resolved.Value, authHeader) : resolved.Error!;
                if (!authResult.IsSuccess) return await UndoGrantAsync(accessor, authResult.Error!, ct);
                auth = authResult.Value;
            }

            var described = await sessions.DescribeAsync(url, auth, ct);
            if (!described.IsSuccess) return granted ? await UndoGrantAsync(accessor, described.Error!, ct) : described.Error!;
            var description = described.Value;

            connection = await session.ConnectionAsync(ct);
            var policy = await policies.GetAsync(connection, session.TenantId, ct);
            var definitions = description.Tools.Select(McpTool.Definition.From).ToList();
            try
            {
                var inserted = await connection.QuerySingleOrDefaultAsync<Guid?>(new CommandDefinition(InsertServerSql, new
                {
                    Id = id,
                    session.TenantId,
                    request.Name,
                    Url = url.AbsoluteUri,
                    description.Transport,
                    request.CredentialRef,
                    AuthHeader = authHeader,
                    description.ProtocolVersion,
                    description.ServerName,
                    description.ServerVersion,
                    Capabilities = description.CapabilitiesJson,
                    ExposeResources = request.ExposeResources ?? false,
                    ExposePrompts = request.ExposePrompts ?? false,
                }, cancellationToken: ct));
                if (inserted is null) return granted ? await UndoGrantAsync(accessor, Duplicate(url), ct) : Duplicate(url);

                await connection.ExecuteAsync(new CommandDefinition(McpTool.InsertSql,
                    definitions.Select(d => McpTool.InsertArgs(session.TenantId, id, d, enabled: policy.Evaluate(request.Name, id, d.Name, d.RiskLevel).Allowed)).ToList(),
                    cancellationToken: ct));
            }
            catch (PostgresException e) when (e.SqlState is PostgresErrorCodes.UntranslatableCharacter or PostgresErrorCodes.InvalidTextRepresentation)
            {
                var error = Error.UpstreamError($"The MCP server at {url.Authority} announced tool definitions that cannot be stored (invalid JSON text).");
                return granted ? await UndoGrantAsync(accessor, error, ct) : error;
            }

            var server = (await McpServer.FindAsync(session, id, ct))!;
            var tools = (await McpTool.ForServerAsync(connection, session.TenantId, id, ct)).ConvertAll(t => t.ToResponse());
            audit.Record(McpServer.SubjectType, id.ToString(), new
            {
                request.Name,
                Url = url.AbsoluteUri,
                CredentialRef = CredentialReference.Describe(request.CredentialRef),
                AuthHeader = authHeader,
                description.Transport,
                description.ProtocolVersion,
                description.ServerName,
                description.ServerVersion,
                ExposeResources = request.ExposeResources ?? false,
                ExposePrompts = request.ExposePrompts ?? false,
                policy.RiskCeiling,
                Tools = tools.Select(t => new { t.Name, t.RiskLevel, t.Enabled, t.DefinitionHash }),
            });
            return new Response(server.ToResponse(), tools);
        }

        private static Error Duplicate(Uri url) =>
            Error.Conflict($"An MCP server with the URL '{url.AbsoluteUri}' is already registered for this tenant.");

        /// <summary>The registration failed after its grant committed: take the grant back, so nothing of it stays.</summary>
        private async Task<Error> UndoGrantAsync(CredentialAccessor accessor, Error error, CancellationToken ct)
        {
            await session.RollbackAsync();
            await grants.DetachAllAsync(accessor, ct);
            await session.CommitAsync(ct);
            return error;
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPost("/", async (Command command, IMediator mediator, HttpContext http) =>
                (await mediator.Send(command, http.RequestAborted)).ToHttp(http,
                    created => TypedResults.Created($"/integrations/mcp-servers/{created.Server.Id}", created)))
            .WithName(Command.Operation)
            .WithRequestExample(new Command("everything", "https://mcp.example.com/mcp", CredentialRef: "cus-vault://acme/0192f4a0-8c1e-7a3b-9d2e-5f6a7b8c9d0e"))
            .WithSummary("Register an MCP server: SSRF check, initialize (Streamable HTTP, falling back to legacy SSE), tools/list (all pages); store the server and its classified tools.")
            .Produces<Response>(StatusCodes.Status201Created)
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status409Conflict)
            .ProducesProblem(StatusCodes.Status422UnprocessableEntity)
            .ProducesProblem(StatusCodes.Status502BadGateway)
            .ProducesProblem(StatusCodes.Status504GatewayTimeout);
}
