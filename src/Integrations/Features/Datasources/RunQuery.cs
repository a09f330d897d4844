using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using FluentValidation;
using Integrations.Common;
using Integrations.Infrastructure.Datasources;
using Integrations.Infrastructure.Http;
using Integrations.Pipeline.Governance;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.Datasources;

/// <summary>
/// datasources.query: runs one stored template, never caller SQL, as a governed call (<see cref="QueryCall"/> is its
/// kind: target, rules). The stage records requested, decides, resolves the datasource's sign-in and records started;
/// this handler only runs the statement, with the parameters bound by position and type, in a READ ONLY transaction
/// with its timeout, row cap and byte cap, and reports the row count and truncation for <c>completed</c>.
/// </summary>
public static class RunQuery
{
    public const string Requested = "datasource.query.requested";
    public const string Denied = "datasource.query.denied";
    public const string Completed = "datasource.query.completed";
    public const string Failed = "datasource.query.failed";

    public sealed record Command(Guid DatasourceId, string Name, IReadOnlyDictionary<string, JsonElement>? Parameters = null)
        : IOperation<Response>, IGovernedCall
    {
        private string? _parametersHash;

        public static string Operation => "datasources.query";
        public static string Scope => Scopes.Invoke;

        /// <summary>SHA-256 of the parameters as canonical JSON (keys sorted): the audit trail proves what was asked without holding it.</summary>
        public string ParametersHash => _parametersHash ??= Hash(Parameters);

        private static string Hash(IReadOnlyDictionary<string, JsonElement>? parameters)
        {
            var canonical = new SortedDictionary<string, JsonElement>(
                (parameters ?? new Dictionary<string, JsonElement>()).ToDictionary(p => p.Key, p => p.Value), StringComparer.Ordinal);
            return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(JsonSerializer.Serialize(canonical))));
        }
    }

    public sealed record Body(IReadOnlyDictionary<string, JsonElement>? Parameters = null);

    /// <summary>
    /// <c>truncated</c>: more rows were there than came back; <c>truncated_reason</c> says which cap stopped them:
    /// <c>row_limit</c> (the template's) or <c>byte_limit</c> (<c>Integrations:Datasources:MaxResultBytes</c>); null when not truncated.
    /// </summary>
    public sealed record Response(
        Guid QueryId,
        string Query,
        IReadOnlyList<ColumnInfo> Columns,
        IReadOnlyList<JsonNode?[]> Rows,
        int RowCount,
        bool Truncated,
        string? TruncatedReason,
        long DurationMs,
        Guid InvocationId);

    internal sealed class Validator : AbstractValidator<Command>
    {
        public Validator()
        {
            RuleFor(x => x.Name).ValidQueryName();
            RuleFor(x => x.Parameters).Must(p => p is null || p.Count <= Datasource.MaxParameters)
                .WithMessage($"At most {Datasource.MaxParameters} parameters.");
        }
    }

    internal sealed class Handler(GovernedCallContext calls, SqlGateway gateway) : IRequestHandler<Command, Result<Response>>
    {
        private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

        public async Task<Result<Response>> Handle(Command request, CancellationToken ct)
        {
            var call = calls.Current;
            var template = call.TargetAs<QueryCall.Target>();
            var signIn = DatasourceSignIn.Of(call.Credential!, template.Endpoint).Value;
            if (!QueryCall.TryBind(template.Declared, request.Parameters, out var values, out var refused)) return refused!;

            var positional = new CheckedTemplate(RewriteOrThrow(template), template.Declared.Select(p => p.Name).ToList());
            var result = await gateway.RunAsync(template.Endpoint, signIn, positional, template.Declared.Select(p => p.Type).ToList(),
                values, template.RowLimit, template.TimeoutMs, ct);
            if (!result.IsSuccess) return result.Error!;

            var rows = result.Value;
            // What came back, as its hash (and evidence) take it: the columns and the rows, as the response gives them.
            var output = JsonSerializer.SerializeToElement(new { columns = rows.Columns, rows = rows.Rows }, Json);
            call.Report(new CallOutput(OutputHash: CanonicalJson.Sha256(output), Facts: new Dictionary<string, object?>
            {
                ["row_count"] = rows.Rows.Count,
                ["truncated"] = rows.Truncated,
                ["truncated_reason"] = rows.TruncatedReason,
            }, Output: call.KeepsEvidence ? output : null));
            return new Response(template.Id, template.Name, rows.Columns, rows.Rows, rows.Rows.Count, rows.Truncated, rows.TruncatedReason,
                (long)call.Duration, call.Id);
        }

        /// <summary>The stored text passed these rules when it was defined; a failure now means the rules or the row changed.</summary>
        private static string RewriteOrThrow(QueryCall.Target template)
        {
            if (SqlTemplateGuard.TryCheck(template.Sql, template.Declared.Select(p => p.Name).ToList(), template.TimeoutMs, out var checkedTemplate, out _, out var refusal))
            {
                return checkedTemplate!.PositionalSql;
            }
            throw new InvalidOperationException($"The stored template {template.Id} no longer passes the gateway's rules: {refusal}");
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPost("/{id:guid}/queries/{name}", async (Guid id, string name, Body? body, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id, name, body?.Parameters), http.RequestAborted)).ToHttp(http))
            .WithName(Command.Operation)
            .WithRequestExample(new Body(new Dictionary<string, JsonElement> { ["customer"] = JsonSerializer.SerializeToElement(42) }))
            .WithSummary("Run a query template with named, typed parameters (bound, never spliced) in a READ ONLY transaction with its timeout, row cap and byte cap.")
            .Produces<Response>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status403Forbidden)
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status429TooManyRequests)
            .ProducesProblem(StatusCodes.Status502BadGateway)
            .ProducesProblem(StatusCodes.Status504GatewayTimeout);
}
