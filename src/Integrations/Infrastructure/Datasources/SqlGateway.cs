using System.Buffers;
using System.Data;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Integrations.Common;
using Npgsql;
using NpgsqlTypes;

namespace Integrations.Infrastructure.Datasources;

public sealed record ColumnInfo(string Name, string Type);

public sealed record ProbeResult(string ServerVersion, string User);

/// <summary>The rows of a run; <see cref="TruncatedReason"/> names the cap that ended it early, if one did.</summary>
public sealed record QueryRows(IReadOnlyList<ColumnInfo> Columns, IReadOnlyList<JsonNode?[]> Rows, string? TruncatedReason)
{
    /// <summary>The template's row cap: more rows were there.</summary>
    public const string RowLimit = "row_limit";

    /// <summary>The result byte cap (<see cref="DatasourceOptions.MaxResultBytes"/>): the next row did not fit.</summary>
    public const string ByteLimit = "byte_limit";

    public bool Truncated => TruncatedReason is not null;
}

/// <summary>
/// Everything the gateway runs on a datasource happens here, each time in a fresh READ ONLY transaction with
/// <c>statement_timeout</c> set, rolled back at the end: the probe, the definition check of a template (the
/// datasource parses it, which refuses several statements; every function, operator, type and relation of its parse
/// tree is checked by OID against <see cref="FunctionAllowList"/>; then it is planned, which shows any data-modifying
/// or row-locking part), and a template's run with bound, typed parameters, a row cap and a byte cap.
/// </summary>
public sealed class SqlGateway(DatasourceConnections connections, DatasourceOptions options)
{
    public Task<Result<ProbeResult>> ProbeAsync(DatasourceTarget target, DatasourceSignIn signIn, int timeoutMs, CancellationToken ct) =>
        ReadOnlyAsync(target, signIn, timeoutMs, ct, async (connection, transaction) =>
        {
            await using var command = new NpgsqlCommand("SELECT current_setting('server_version'), current_user::text", connection, transaction);
            await using var reader = await command.ExecuteReaderAsync(ct);
            await reader.ReadAsync(ct);
            return Result<ProbeResult>.Ok(new ProbeResult(reader.GetString(0), reader.GetString(1)));
        });

    /// <summary>
    /// The datasource's verdict on a template: its result columns, or why it is refused (a validation error on
    /// <c>sql</c>). A connection problem is the datasource's failure (upstream_error/timeout), not the template's.
    /// In order, nothing of the template executing before the tree is checked: the datasource's domains (their
    /// CHECKs can run while literals are parsed), the statement's rewritten parse tree (<see cref="ParseTree"/>,
    /// views and row-security policies expanded) against the allow-list by OID (<see cref="CatalogCheck"/>), then the
    /// plan (constant folding runs allowed functions only by then) and the columns.
    /// </summary>
    public Task<Result<IReadOnlyList<ColumnInfo>>> DescribeAsync(
        DatasourceTarget target, DatasourceSignIn signIn, CheckedTemplate template, IReadOnlyList<string> parameterTypes, int timeoutMs,
        CancellationToken ct, IReadOnlyList<string>? extensionFunctions = null) =>
        ReadOnlyAsync<IReadOnlyList<ColumnInfo>>(target, signIn, timeoutMs, ct, async (connection, transaction) =>
        {
            extensionFunctions ??= [];
            try
            {
                // The catalog queries look expensive to the planner, which would compile them (hundreds of ms); and they are
                // the gateway's, not the template's: a template's short timeout does not apply to them.
                await SetAsync(connection, transaction, $"SET LOCAL jit = off; SET LOCAL statement_timeout = {Math.Max(timeoutMs, CheckTimeoutMs)}", ct);
                if (await DomainRefusalAsync(connection, transaction, extensionFunctions, ct) is { } domain)
                {
                    return Result<IReadOnlyList<ColumnInfo>>.Fail(Error.Validation("sql", domain));
                }
                var tree = await ParseTreeAsync(connection, transaction, template, parameterTypes, timeoutMs, ct);
                if (tree.ShapeRefusal() is { } shape) return Result<IReadOnlyList<ColumnInfo>>.Fail(Error.Validation("sql", shape));
                var refusals = await CatalogCheck.RefusalsAsync(connection, transaction, tree, extensionFunctions, ct);
                if (refusals.Count > 0) return Result<IReadOnlyList<ColumnInfo>>.Fail(Error.Validation("sql", CatalogCheck.Describe(refusals)));
                await SetAsync(connection, transaction, $"SET LOCAL statement_timeout = {timeoutMs}", ct);

                string plan;
                await using (var explain = Batch(connection, transaction, "EXPLAIN (VERBOSE, FORMAT JSON) " + template.PositionalSql,
                                 parameterTypes, parameterTypes.Select(_ => (object)DBNull.Value).ToList(), timeoutMs))
                {
                    plan = (string)(await explain.ExecuteScalarAsync(ct))!;
                }
                if (RefusalInPlan(plan) is { } refusal) return Result<IReadOnlyList<ColumnInfo>>.Fail(Error.Validation("sql", refusal));

                await using var describe = Batch(connection, transaction, Wrap(template, 0), parameterTypes,
                    parameterTypes.Select(_ => (object)DBNull.Value).ToList(), timeoutMs);
                await using var reader = await describe.ExecuteReaderAsync(CommandBehavior.SchemaOnly, ct);
                return Result<IReadOnlyList<ColumnInfo>>.Ok(Columns(reader));
            }
            catch (PostgresException e) when (e.SqlState != PostgresErrorCodes.QueryCanceled)
            {
                return Result<IReadOnlyList<ColumnInfo>>.Fail(Error.Validation("sql", $"The datasource refused the template ({e.SqlState}): {e.MessageText}"));
            }
        });

    /// <summary>The least time the definition check's own catalog queries get on the datasource.</summary>
    private const int CheckTimeoutMs = 10_000;

    // Integers only: nothing a caller sent is part of this text.
    private static async Task SetAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, FormattableString settings, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(FormattableString.Invariant(settings), connection, transaction);
        await command.ExecuteNonQueryAsync(ct);
    }

    /// <summary>
    /// The statement's rewritten parse tree as the datasource dumps it: only parsed (no plan, no execution), with
    /// <c>debug_print_rewritten</c> sent to us as a LOG notice for this one statement. (The server's own log gets a
    /// copy at LOG level: the price of reading the tree without creating anything on the datasource.)
    /// </summary>
    private static async Task<ParseTree> ParseTreeAsync(NpgsqlConnection connection, NpgsqlTransaction transaction,
        CheckedTemplate template, IReadOnlyList<string> parameterTypes, int timeoutMs, CancellationToken ct)
    {
        var dumps = new List<string>();
        NoticeEventHandler capture = (_, e) =>
        {
            if (e.Notice.Severity == "LOG" && e.Notice.MessageText.StartsWith("rewritten parse tree", StringComparison.Ordinal)) dumps.Add(e.Notice.Detail ?? string.Empty);
        };
        await SetAsync(connection, transaction, $"SET LOCAL debug_pretty_print = off; SET LOCAL client_min_messages = log; SET LOCAL debug_print_rewritten = on", ct);
        connection.Notice += capture;
        try
        {
            await using var parse = Batch(connection, transaction, template.PositionalSql, parameterTypes,
                parameterTypes.Select(_ => (object)DBNull.Value).ToList(), timeoutMs);
            await using (await parse.ExecuteReaderAsync(CommandBehavior.SchemaOnly, ct))
            {
            }
        }
        finally
        {
            connection.Notice -= capture;
        }
        await SetAsync(connection, transaction, $"SET LOCAL debug_print_rewritten = off; SET LOCAL client_min_messages = notice", ct);
        // One statement, one tree; none (a server that would not send it) or a redacted one is never a pass.
        if (dumps.Count != 1 || !dumps[0].Contains("{QUERY", StringComparison.Ordinal))
        {
            throw new PostgresException("The datasource did not show the statement's parse tree, so the gateway cannot check it.", "ERROR", "ERROR", "XX000");
        }
        return ParseTree.Read(dumps[0]);
    }

    /// <summary>
    /// A domain's CHECK runs wherever a value becomes the domain, even while a literal is parsed (an array or row of
    /// the domain): so every domain of the datasource must pass the allow-list before any template is parsed there.
    /// </summary>
    private static async Task<string?> DomainRefusalAsync(NpgsqlConnection connection, NpgsqlTransaction transaction,
        IReadOnlyList<string> extensionFunctions, CancellationToken ct)
    {
        var domains = new List<(string Name, ParseTree Check)>();
        await using (var command = new NpgsqlCommand("""
            SELECT t.oid::regtype::text, c.conbin::text FROM pg_constraint c JOIN pg_type t ON t.oid = c.contypid
            WHERE c.contype = 'c' AND c.conbin IS NOT NULL AND t.oid >= 16384
            """, connection, transaction))
        await using (var reader = await command.ExecuteReaderAsync(ct))
        {
            while (await reader.ReadAsync(ct)) domains.Add((reader.GetString(0), ParseTree.Read(reader.GetString(1))));
        }
        foreach (var (name, check) in domains)
        {
            var where = $"A CHECK of the domain {name} on the datasource (it can run while any template is parsed)";
            if (check.ShapeRefusal() is { } shape) return $"{where}: {shape}";
            var refusals = await CatalogCheck.RefusalsAsync(connection, transaction, check, extensionFunctions, ct);
            if (refusals.Count > 0) return CatalogCheck.Describe(refusals, where);
        }
        return null;
    }

    /// <summary>
    /// Runs a checked template with its values bound as typed parameters. Rows come back until the row cap
    /// (<paramref name="rowLimit"/>) or the byte cap (<see cref="DatasourceOptions.MaxResultBytes"/>, the rows as JSON
    /// by <see cref="JsonBytes"/>) would be passed: the rows read so far, with the cap that stopped them. A first row
    /// that alone passes the byte cap leaves nothing to return: 502 <c>upstream_error</c>, naming the cap.
    /// </summary>
    public Task<Result<QueryRows>> RunAsync(
        DatasourceTarget target, DatasourceSignIn signIn, CheckedTemplate template, IReadOnlyList<string> parameterTypes,
        IReadOnlyList<object> values, int rowLimit, int timeoutMs, CancellationToken ct) =>
        ReadOnlyAsync<QueryRows>(target, signIn, timeoutMs, ct, async (connection, transaction) =>
        {
            await using var batch = Batch(connection, transaction, Wrap(template, rowLimit + 1), parameterTypes, values, timeoutMs);
            // Sequential: each value is read from the wire only when asked for, so one too big for the cap is never loaded.
            await using var reader = await batch.ExecuteReaderAsync(CommandBehavior.SequentialAccess, ct);
            var columns = Columns(reader);
            var rows = new List<JsonNode?[]>();
            var bytes = 2L; // the brackets around the rows
            while (await reader.ReadAsync(ct))
            {
                if (rows.Count == rowLimit) return new QueryRows(columns, rows, QueryRows.RowLimit);
                // A row is [v1,v2,...] and follows the previous one after a comma.
                var overhead = 2L + Math.Max(0, columns.Count - 1) + (rows.Count > 0 ? 1 : 0);
                var read = ReadRow(reader, columns, options.MaxResultBytes - bytes - overhead);
                if (!read.IsSuccess) return read.Error!;
                if (read.Value is not { } row)
                {
                    if (rows.Count > 0) return new QueryRows(columns, rows, QueryRows.ByteLimit);
                    return Error.UpstreamError(
                        $"The first row of the result is larger than the result cap of {options.MaxResultBytes} bytes " +
                        $"({DatasourceOptions.Section}:MaxResultBytes): select fewer or narrower columns, e.g. left(column, n).")
                        with
                    { Extensions = new Dictionary<string, object?> { ["max_result_bytes"] = options.MaxResultBytes } };
                }
                rows.Add(row.Values);
                bytes += overhead + row.Bytes;
            }
            return new QueryRows(columns, rows, null);
        });

    private sealed record Row(JsonNode?[] Values, long Bytes);

    /// <summary>
    /// The current row's values, or null when they come to more than <paramref name="budget"/> bytes as JSON. Text,
    /// json and bytea values are measured on the wire before they are loaded: their JSON is never shorter than that.
    /// </summary>
    private static Result<Row?> ReadRow(NpgsqlDataReader reader, List<ColumnInfo> columns, long budget)
    {
        var values = new JsonNode?[columns.Count];
        var bytes = 0L;
        for (var i = 0; i < columns.Count; i++)
        {
            try
            {
                if (reader.IsDBNull(i))
                {
                    bytes += JsonBytes(null, columns[i].Type);
                }
                else
                {
                    // UTF-8 text (jsonb after a version byte) or raw bytes on the wire: at least length - 1 as JSON.
                    if (reader.GetFieldType(i) is var type && (type == typeof(string) || type == typeof(byte[]))
                        && bytes + reader.GetBytes(i, 0, null, 0, 0) - 1 > budget)
                    {
                        return Result<Row?>.Ok(null);
                    }
                    var value = reader.GetValue(i);
                    values[i] = ToJson(value, columns[i].Type);
                    bytes += JsonBytes(value, columns[i].Type);
                }
            }
            catch (Exception e) when (e is InvalidCastException or NotSupportedException)
            {
                return Error.UpstreamError(
                    $"The column '{columns[i].Name}' has type '{columns[i].Type}', which the gateway cannot read: cast it to text in the template.");
            }
            if (bytes > budget) return Result<Row?>.Ok(null);
        }
        return new Row(values, bytes);
    }

    /// <summary>
    /// The bytes a value read from the datasource takes in the JSON result as System.Text.Json writes it by default (the
    /// API's encoder), never less: fixed-width types at their longest form; text with every character but plain ASCII
    /// as a six-byte <c>\uXXXX</c> escape, plus quotes; json and jsonb text the same way, their own quotes at one byte;
    /// bytea as base64; an array as its items with commas and brackets.
    /// </summary>
    internal static long JsonBytes(object? value, string type) => value switch
    {
        null or DBNull => 4,
        string s when type is "json" or "jsonb" => JsonTextBytes(s, PlainInJson),
        string s => JsonTextBytes(s, PlainInString) + 2,
        bool => 5,
        short => 6,
        int => 11,
        long => 20,
        decimal => 31,
        float => 16,
        double => 24,
        DateTime or DateTimeOffset => 35,
        DateOnly => 12,
        TimeOnly => 18,
        Guid => 38,
        byte[] bytes => 4L * ((bytes.LongLength + 2) / 3) + 2,
        Array array => 2 + Math.Max(0, array.Length - 1) + array.Cast<object?>().Sum(item => JsonBytes(item, type.TrimEnd('[', ']'))),
        _ => JsonTextBytes(Convert.ToString(value, CultureInfo.InvariantCulture) ?? string.Empty, PlainInString) + 2,
    };

    // What the default encoder writes as itself; any other UTF-16 unit is counted as an escape (\uXXXX, the longest form).
    private const string PlainAscii = " !#$%()*,-./0123456789:;=?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]^_abcdefghijklmnopqrstuvwxyz{|}~";
    private static readonly SearchValues<char> PlainInString = SearchValues.Create(PlainAscii);
    private static readonly SearchValues<char> PlainInJson = SearchValues.Create(PlainAscii + "\"");

    private static long JsonTextBytes(ReadOnlySpan<char> text, SearchValues<char> plain)
    {
        var bytes = (long)text.Length;
        for (var next = text.IndexOfAnyExcept(plain); next >= 0; next = text.IndexOfAnyExcept(plain))
        {
            bytes += 5;
            text = text[(next + 1)..];
        }
        return bytes;
    }

    /// <summary>
    /// The row cap is part of the statement, so the datasource stops producing rows; as a subquery the template
    /// also meets PostgreSQL's own rule that a data-modifying WITH must be at the top level.
    /// The newline keeps a trailing line comment in the template from swallowing the wrapper.
    /// </summary>
    private static string Wrap(CheckedTemplate template, int limit) =>
        $"SELECT * FROM (\n{template.PositionalSql}\n) AS gateway_result" + (limit > 0 ? $" LIMIT {limit}" : string.Empty);

    [System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1068", Justification = "The work reads best as the trailing lambda of each call.")]
    private async Task<Result<T>> ReadOnlyAsync<T>(DatasourceTarget target, DatasourceSignIn signIn, int timeoutMs, CancellationToken ct,
        Func<NpgsqlConnection, NpgsqlTransaction, Task<Result<T>>> work)
    {
        var opened = await connections.OpenAsync(target, signIn, ct);
        if (!opened.IsSuccess) return opened.Error!;
        await using var connection = opened.Value;
        try
        {
            await using var transaction = await connection.BeginTransactionAsync(ct);
            // Integers only: nothing a caller sent is part of this text.
            var setup = string.Create(CultureInfo.InvariantCulture, $"""
                SET TRANSACTION READ ONLY;
                SET LOCAL statement_timeout = {timeoutMs};
                SET LOCAL lock_timeout = {timeoutMs};
                SET LOCAL idle_in_transaction_session_timeout = {timeoutMs + 30_000};
                SET LOCAL standard_conforming_strings = on
                """);
            await using (var command = new NpgsqlCommand(setup, connection, transaction))
            {
                await command.ExecuteNonQueryAsync(ct);
            }
            return await work(connection, transaction);
        }
        catch (Exception e) when (!ct.IsCancellationRequested && DatasourceErrors.From(e, target, timeoutMs) is { } error)
        {
            return error;
        }
    }

    private static NpgsqlBatch Batch(NpgsqlConnection connection, NpgsqlTransaction transaction, string sql,
        IReadOnlyList<string> parameterTypes, IReadOnlyList<object> values, int timeoutMs)
    {
        // A batch command is sent as written (no client-side splitting or rewriting), with positional parameters only.
        var command = new NpgsqlBatchCommand(sql);
        for (var i = 0; i < parameterTypes.Count; i++)
        {
            command.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = QueryParameterTypes.DbType(parameterTypes[i]), Value = values[i] });
        }
        return new NpgsqlBatch(connection, transaction)
        {
            BatchCommands = { command },
            Timeout = (int)Math.Ceiling(timeoutMs / 1000.0) + 5,
        };
    }

    private static List<ColumnInfo> Columns(NpgsqlDataReader reader)
    {
        var columns = new List<ColumnInfo>(reader.FieldCount);
        for (var i = 0; i < reader.FieldCount; i++) columns.Add(new ColumnInfo(reader.GetName(i), reader.GetDataTypeName(i)));
        return columns;
    }

    /// <summary>
    /// Reads the datasource's plan: a ModifyTable node is a data-modifying part, LockRows a row lock (the parse tree
    /// refuses both first; the plan is the second look, after the planner's rewrites).
    /// </summary>
    internal static string? RefusalInPlan(string planJson)
    {
        using var document = JsonDocument.Parse(planJson);
        return Walk(document.RootElement);

        static string? Walk(JsonElement element)
        {
            switch (element.ValueKind)
            {
                case JsonValueKind.Object:
                    if (element.TryGetProperty("Node Type", out var node) && node.GetString() is "ModifyTable" or "LockRows")
                    {
                        return node.GetString() == "ModifyTable"
                            ? "The template modifies data (the datasource plans an INSERT, UPDATE, DELETE or MERGE): only reads can run."
                            : "The template locks rows (FOR UPDATE / FOR SHARE): only plain reads can run.";
                    }
                    foreach (var property in element.EnumerateObject())
                    {
                        if (Walk(property.Value) is { } found) return found;
                    }
                    return null;
                case JsonValueKind.Array:
                    foreach (var item in element.EnumerateArray())
                    {
                        if (Walk(item) is { } found) return found;
                    }
                    return null;
                default:
                    return null;
            }
        }
    }

    internal static JsonNode? ToJson(object value, string type) => value switch
    {
        string s when type is "json" or "jsonb" => JsonNode.Parse(s),
        string s => JsonValue.Create(s),
        bool b => JsonValue.Create(b),
        short n => JsonValue.Create(n),
        int n => JsonValue.Create(n),
        long n => JsonValue.Create(n),
        decimal n => JsonValue.Create(n),
        float f when float.IsFinite(f) => JsonValue.Create(f),
        double d when double.IsFinite(d) => JsonValue.Create(d),
        DateTime { Kind: DateTimeKind.Utc } t => JsonValue.Create(t.ToString("yyyy-MM-dd'T'HH:mm:ss.FFFFFFF'Z'", CultureInfo.InvariantCulture)),
        DateTime t => JsonValue.Create(t.ToString("yyyy-MM-dd'T'HH:mm:ss.FFFFFFF", CultureInfo.InvariantCulture)),
        DateTimeOffset t => JsonValue.Create(t.ToString("O", CultureInfo.InvariantCulture)),
        DateOnly d => JsonValue.Create(d.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture)),
        TimeOnly t => JsonValue.Create(t.ToString("HH:mm:ss.FFFFFFF", CultureInfo.InvariantCulture)),
        Guid g => JsonValue.Create(g.ToString()),
        byte[] bytes => JsonValue.Create(Convert.ToBase64String(bytes)),
        Array array => new JsonArray(array.Cast<object?>().Select(item => item is null or DBNull ? null : ToJson(item, type.TrimEnd('[', ']'))).ToArray()),
        _ => JsonValue.Create(Convert.ToString(value, CultureInfo.InvariantCulture)),
    };
}
