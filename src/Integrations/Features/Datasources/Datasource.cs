using System.Text.Json;
using System.Text.RegularExpressions;
using FluentValidation;
using Integrations.Common;
using Integrations.Infrastructure.Datasources;
using Integrations.Infrastructure.Network;
using Integrations.Infrastructure.Vault;

namespace Integrations.Features.Datasources;

/// <summary>What the datasources.* slices share: the shapes they answer with, the rows they read, the field rules.</summary>
public static partial class Datasource
{
    public const string SubjectType = "datasource";
    public const string QuerySubjectType = "datasource_query";

    public static readonly string[] Kinds = ["postgres"];
    public static readonly string[] Statuses = ["pending", "active", "failing"];
    public static readonly string[] TlsModes = ["disable", "prefer", "require", "verify-full"];

    public const int MaxRowLimit = 10_000;
    public const int MinTimeoutMs = 100;
    public const int MaxTimeoutMs = 120_000;
    public const int MaxParameters = 50;

    public sealed record Response(
        Guid Id,
        string Name,
        [OneOf(typeof(Datasource), nameof(Datasource.Kinds))] string Kind,
        string Host,
        int Port,
        string Database,
        string Username,
        string CredentialRef,
        [OneOf(typeof(Datasource), nameof(Datasource.TlsModes))] string TlsMode,
        int RowLimit,
        int StatementTimeoutMs,
        [OneOf(typeof(Datasource), nameof(Datasource.Statuses))] string Status,
        string? StatusMessage,
        string? ServerVersion,
        DateTimeOffset? TestedAt,
        DateTimeOffset CreatedAt,
        DateTimeOffset UpdatedAt,
        IReadOnlyList<string> AllowedFunctions);

    internal const string Columns = """
        id, name, kind, host, port, database, username, credential_ref, tls_mode, row_limit, statement_timeout_ms,
        status, status_message, server_version, tested_at, created_at, updated_at, allowed_functions
        """;

    internal sealed class Row
    {
        public Guid Id { get; init; }
        public required string Name { get; init; }
        public required string Kind { get; init; }
        public required string Host { get; init; }
        public int Port { get; init; }
        public required string Database { get; init; }
        public required string Username { get; init; }
        public required string CredentialRef { get; init; }
        public required string TlsMode { get; init; }
        public int RowLimit { get; init; }
        public int StatementTimeoutMs { get; init; }
        public required string Status { get; init; }
        public string? StatusMessage { get; init; }
        public string? ServerVersion { get; init; }
        public DateTimeOffset? TestedAt { get; init; }
        public DateTimeOffset CreatedAt { get; init; }
        public DateTimeOffset UpdatedAt { get; init; }
        public string[] AllowedFunctions { get; init; } = [];

        public DatasourceTarget Target => new(Id, Host, Port, Database, Username, TlsMode);

        public Response ToResponse() => new(
            Id, Name, Kind, Host, Port, Database, Username, CredentialRef, TlsMode, RowLimit, StatementTimeoutMs,
            Status, StatusMessage, ServerVersion, TestedAt, CreatedAt, UpdatedAt, AllowedFunctions);
    }

    /// <summary>A declared template parameter: bound as this PostgreSQL type, in this order.</summary>
    public sealed record Parameter(string Name, [OneOf(typeof(QueryParameterTypes), nameof(QueryParameterTypes.Names))] string Type);

    public sealed record QueryResponse(
        Guid Id,
        Guid DatasourceId,
        string Name,
        string? Description,
        string Sql,
        IReadOnlyList<Parameter> Parameters,
        IReadOnlyList<ColumnInfo> Columns,
        int RowLimit,
        int TimeoutMs,
        int? RateLimitPerMinute,
        bool Enabled,
        DateTimeOffset CreatedAt,
        DateTimeOffset UpdatedAt,
        string? DisabledReason);

    internal const string QueryColumns = """
        id, datasource_id, name, description, sql, parameters::text AS parameters, columns::text AS columns,
        row_limit, timeout_ms, rate_limit_per_minute, enabled, created_at, updated_at, disabled_reason
        """;

    internal sealed class QueryRow
    {
        public Guid Id { get; init; }
        public Guid DatasourceId { get; init; }
        public required string Name { get; init; }
        public string? Description { get; init; }
        public required string Sql { get; init; }
        public required string Parameters { get; init; }
        public required string Columns { get; init; }
        public int RowLimit { get; init; }
        public int TimeoutMs { get; init; }
        public int? RateLimitPerMinute { get; init; }
        public bool Enabled { get; init; }
        public DateTimeOffset CreatedAt { get; init; }
        public DateTimeOffset UpdatedAt { get; init; }
        public string? DisabledReason { get; init; }

        public IReadOnlyList<Parameter> ParameterList => ParseParameters(Parameters);

        public QueryResponse ToResponse() => new(
            Id, DatasourceId, Name, Description, Sql, ParameterList,
            JsonSerializer.Deserialize<List<ColumnInfo>>(Columns, Json) ?? [],
            RowLimit, TimeoutMs, RateLimitPerMinute, Enabled, CreatedAt, UpdatedAt, DisabledReason);
    }

    internal static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    internal static IReadOnlyList<Parameter> ParseParameters(string json) => JsonSerializer.Deserialize<List<Parameter>>(json, Json) ?? [];

    internal static IRuleBuilderOptions<T, string?> ValidName<T>(this IRuleBuilder<T, string?> rule) =>
        rule.NotEmpty().WithMessage("Name is required.")
            .MaximumLength(200).WithMessage("Name may be at most 200 characters.")
            .Must(n => n is null || n.Trim() == n).WithMessage("Name may not start or end with whitespace.");

    /// <summary>Template names appear in the route (…/queries/{name}): lower-case letters, digits, '_' and '-'.</summary>
    internal static IRuleBuilderOptions<T, string?> ValidQueryName<T>(this IRuleBuilder<T, string?> rule) =>
        rule.NotEmpty().WithMessage("Name is required.")
            .Must(n => n is null || QueryName().IsMatch(n))
            .WithMessage("A template name is 1-100 characters: a lower-case letter, then lower-case letters, digits, '_' or '-'.");

    /// <summary>One host name or address: no lists, ports, paths, credentials or whitespace.</summary>
    internal static IRuleBuilderOptions<T, string?> ValidHost<T>(this IRuleBuilder<T, string?> rule) =>
        rule.NotEmpty().WithMessage("Host is required.")
            .Must(h => h is null || (h.Length <= 253 && Uri.CheckHostName(h.Trim('[', ']')) != UriHostNameType.Unknown && !h.Contains(',')))
            .WithMessage("Host must be one DNS name or IP address.");

    /// <summary>PostgreSQL names are at most 63 bytes; control characters never belong in them.</summary>
    internal static IRuleBuilderOptions<T, string?> ValidPostgresName<T>(this IRuleBuilder<T, string?> rule, string what) =>
        rule.NotEmpty().WithMessage($"{what} is required.")
            .Must(n => n is null || (System.Text.Encoding.UTF8.GetByteCount(n) <= 63 && !n.Any(char.IsControl)))
            .WithMessage($"{what} must be at most 63 bytes without control characters.");

    internal static IRuleBuilderOptions<T, string?> ValidCredentialRef<T>(this IRuleBuilder<T, string?> rule, Func<string> tenantId) =>
        rule.Must((owner, value, context) =>
        {
            if (CredentialReference.TryParse(value, tenantId(), systemScope: false, out _, out var error)) return true;
            context.MessageFormatter.AppendArgument("Reason", error);
            return false;
        }).WithMessage("{Reason}");

    /// <summary>Unencrypted (or downgradable) connections only to hosts the egress allow-list opens, as with plain http.</summary>
    internal static bool TlsModeAllowed(string? tlsMode, string? host, EgressAllowList allowList) =>
        tlsMode is "require" or "verify-full" || (tlsMode is "disable" or "prefer" && host is not null && allowList.AllowsPlaintext(host));

    /// <summary>At most <see cref="FunctionAllowList.MaxExtensionFunctions"/> <c>schema.function</c> names of installed extensions, none of a refused family.</summary>
    internal static void ValidAllowedFunctions<T>(
        this AbstractValidator<T> validator, System.Linq.Expressions.Expression<Func<T, IEnumerable<string>?>> functions, string? propertyName = null)
    {
        var count = validator.RuleFor(functions).Must(f => f is null || f.Count() <= FunctionAllowList.MaxExtensionFunctions)
            .WithMessage($"At most {FunctionAllowList.MaxExtensionFunctions} extension functions.");
        var each = validator.RuleForEach(functions).Must((_, f, context) =>
        {
            if (FunctionAllowList.ExtensionFunctionRefusal(f) is not { } refusal) return true;
            context.MessageFormatter.AppendArgument("Reason", refusal);
            return false;
        }).WithMessage("{Reason}");
        if (propertyName is null) return;
        count.OverridePropertyName(propertyName);
        each.OverridePropertyName(propertyName);
    }

    /// <summary>The stored form of an allowed-functions list: distinct, in ordinal order (so equal lists compare equal).</summary>
    internal static string[] NormalizedFunctions(IEnumerable<string> functions) =>
        functions.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToArray();

    internal static IRuleBuilderOptions<T, int?> ValidRowLimit<T>(this IRuleBuilder<T, int?> rule) =>
        rule.InclusiveBetween(1, MaxRowLimit).WithMessage($"Row limit must be between 1 and {MaxRowLimit}.");

    internal static IRuleBuilderOptions<T, int?> ValidTimeout<T>(this IRuleBuilder<T, int?> rule) =>
        rule.InclusiveBetween(MinTimeoutMs, MaxTimeoutMs).WithMessage($"Timeout must be between {MinTimeoutMs} and {MaxTimeoutMs} ms.");

    [GeneratedRegex("^[a-z][a-z0-9_-]{0,99}$")]
    private static partial Regex QueryName();
}
