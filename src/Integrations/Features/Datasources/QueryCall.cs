using System.Text.Json;
using Dapper;
using Integrations.Common;
using Integrations.Features.Policies;
using Integrations.Infrastructure.Datasources;
using Integrations.Infrastructure.Vault;
using Integrations.Pipeline.Governance;
using Npgsql;

namespace Integrations.Features.Datasources;

/// <summary>
/// <c>datasources.query</c> as a kind of governed call: the target is a stored template with its datasource; the rules
/// are the template's state (enabled), the tenant's deny list (a template is named <c>template</c> or
/// <c>datasource/template</c>, the datasource by name or id; a read-only query is low risk, so the risk ceiling never
/// refuses it), the parameters against the declared ones, and the template's per-minute limit (its own, else the
/// policy's default, else <see cref="FallbackRateLimitPerMinute"/>). The credential is the datasource's sign-in (a password or a client certificate).
/// </summary>
public sealed class QueryCall : GovernedCallKind<RunQuery.Command, QueryCall.Target, RunQuery.Response>
{
    /// <summary>Calls per minute for a template with no limit of its own and a tenant policy without a default.</summary>
    public const int FallbackRateLimitPerMinute = 60;

    public sealed class Target : IGovernedTarget
    {
        private IReadOnlyList<Datasource.Parameter>? _declared;

        public Guid Id { get; init; }
        public required string Name { get; init; }
        public required string Sql { get; init; }
        public required string Parameters { get; init; }
        public int RowLimit { get; init; }
        public int TimeoutMs { get; init; }
        public int? RateLimitPerMinute { get; init; }
        public bool Enabled { get; init; }
        public int GuardVersion { get; init; }
        public Guid DatasourceId { get; init; }
        public required string DatasourceName { get; init; }
        public required string Host { get; init; }
        public int Port { get; init; }
        public required string Database { get; init; }
        public required string Username { get; init; }
        public required string CredentialRef { get; init; }
        public required string TlsMode { get; init; }
        public string? DatasourceEvidence { get; init; }

        public IReadOnlyList<Datasource.Parameter> Declared => _declared ??= Datasource.ParseParameters(Parameters);
        public DatasourceTarget Endpoint => new(DatasourceId, Host, Port, Database, Username, TlsMode);
        public string SubjectId => Id.ToString();
        public CredentialAccessor CredentialAccessor => new(CredentialAccessor.Datasource, DatasourceId);
        string? IGovernedTarget.CredentialRef => CredentialRef;

        private EvidencePolicy? _evidence;

        public EvidencePolicy? Evidence => DatasourceEvidence is null ? null : _evidence ??= EvidencePolicy.Effective(DatasourceEvidence);
    }

    private const string TargetSql = """
        SELECT q.id, q.name, q.sql, q.parameters::text AS parameters, q.row_limit, q.timeout_ms, q.rate_limit_per_minute, q.enabled, q.guard_version,
               d.id AS datasource_id, d.name AS datasource_name, d.host, d.port, d.database, d.username, d.credential_ref, d.tls_mode, d.evidence::text AS datasource_evidence
        FROM datasource_queries q
        JOIN datasources d ON d.tenant_id = q.tenant_id AND d.id = q.datasource_id AND d.deleted_at IS NULL
        WHERE q.tenant_id = @TenantId AND q.datasource_id = @DatasourceId AND q.name = @Name AND q.deleted_at IS NULL
        """;

    public override string EventPrefix => "datasource.query";
    public override string SubjectType => Datasource.QuerySubjectType;
    public override string TargetName => "query template";

    public override string SubjectOf(RunQuery.Command request) => $"{request.DatasourceId}/{request.Name}";

    public override Task<Target?> FindAsync(NpgsqlConnection connection, string tenantId, RunQuery.Command request, CancellationToken ct) =>
        connection.QuerySingleOrDefaultAsync<Target>(new CommandDefinition(TargetSql,
            new { TenantId = tenantId, request.DatasourceId, request.Name }, cancellationToken: ct));

    public override CallDenial? CheckState(Target target) =>
        !target.Enabled ? CallDenial.Policy("template_disabled", $"The query template '{target.Name}' is disabled.")
        : target.GuardVersion < FunctionAllowList.RulesVersion ? CallDenial.Policy("template_unchecked",
            $"The query template '{target.Name}' was defined under older rules of the gateway and has not been checked against " +
            "the current ones yet (the datasource could not be reached): it runs once the check passes.")
        : null;

    public override PolicySubject PolicySubjectOf(Target target) => new(target.DatasourceName, target.DatasourceId, target.Name, "low");

    public override ValueTask<CallDenial?> CheckInputAsync(RunQuery.Command request, Target target) =>
        ValueTask.FromResult(TryBind(target.Declared, request.Parameters, out _, out var error) ? null : new CallDenial("input_schema", error!));

    public override TargetRateLimit? RateLimitOf(Target target, ToolPolicy policy)
    {
        var limit = target.RateLimitPerMinute ?? policy.DefaultRateLimitPerMinute ?? FallbackRateLimitPerMinute;
        return new TargetRateLimit($"datasource_query:{target.Id}", limit, "query_rate_limit",
            $"The query template '{target.Name}' allows {limit} calls per minute for this tenant.");
    }

    public override Error? CheckCredential(Target target, ResolvedCredential credential) => DatasourceSignIn.Of(credential, target.Endpoint).Error;

    public override void AddFacts(RunQuery.Command request, Target? target, IDictionary<string, object?> facts)
    {
        facts["datasource_id"] = request.DatasourceId;
        facts["query"] = request.Name;
        facts["parameters_sha256"] = request.ParametersHash;
    }

    /// <summary>Every declared parameter must be given (null is SQL NULL) and nothing else; values are converted to their declared types.</summary>
    internal static bool TryBind(IReadOnlyList<Datasource.Parameter> declared, IReadOnlyDictionary<string, JsonElement>? given,
        out object[] values, out Error? error)
    {
        given ??= new Dictionary<string, JsonElement>();
        values = new object[declared.Count];
        var problems = new Dictionary<string, string[]>();
        foreach (var unknown in given.Keys.Where(k => declared.All(d => d.Name != k)))
        {
            problems[$"parameters.{unknown}"] = ["The template declares no such parameter."];
        }
        for (var i = 0; i < declared.Count; i++)
        {
            if (!given.TryGetValue(declared[i].Name, out var value))
            {
                problems[$"parameters.{declared[i].Name}"] = [$"Required ({declared[i].Type}); send null for SQL NULL."];
            }
            else if (!QueryParameterTypes.TryConvert(declared[i].Type, value, out values[i], out var message))
            {
                problems[$"parameters.{declared[i].Name}"] = [message];
            }
        }
        error = problems.Count == 0 ? null : Error.Validation(problems);
        return error is null;
    }
}
