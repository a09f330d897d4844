namespace Integrations.Infrastructure.Datasources;

/// <summary>
/// The one list of what a template may call on a datasource. Deny by default: a function runs only when it is
/// <list type="bullet">
/// <item>a built-in of <c>pg_catalog</c> (created by initdb: OID below 16384) named here, by name (every built-in
/// overload) or by signature as <c>regprocedure</c> prints it;</item>
/// <item>or the function of a built-in operator, of a built-in cast, or the input/output/receive/send/typmod/subscript
/// function of a built-in type (what coercions and operators run; none of them executes SQL text, opens a
/// connection, touches files, large objects, sequences, locks or settings: a test reads them all from the server);</item>
/// <item>or a function of an installed extension that the datasource lists by qualified name
/// (<see cref="ExtensionFunctionRefusal"/>), never one of <see cref="NeverExtensions"/>.</item>
/// </list>
/// Missing on purpose, among others: everything that executes SQL given as text (<c>ts_stat</c>, <c>ts_rewrite</c>,
/// <c>query_to_xml</c> and the other <c>*_to_xml*</c>, <c>cursor_to_xml</c>), <c>dblink*</c>, files (<c>pg_read_file</c>,
/// <c>pg_ls_dir</c>, <c>pg_stat_file</c>), large objects (<c>lo_*</c>), sequences (<c>nextval</c>, <c>setval</c>,
/// <c>currval</c>), advisory locks, settings (<c>set_config</c>, <c>current_setting</c>), signals and backups, XML
/// (<c>xpath</c>, <c>xmlparse</c>), <c>setseed</c>, and every user-defined function.
/// </summary>
public static class FunctionAllowList
{
    /// <summary>
    /// The version of these rules a stored template last passed (<c>datasource_queries.guard_version</c>). Raise it
    /// whenever the list or the checks change: templates below it are checked again on start-up
    /// (<c>StoredTemplateCheck</c>) and do not run until they pass.
    /// </summary>
    public const int RulesVersion = 1;

    public static readonly IReadOnlyList<string> Builtins =
    [
        // Numbers.
        "abs", "cbrt", "ceil", "ceiling", "degrees", "div", "exp", "factorial", "floor", "gcd", "lcm", "ln", "log", "log10",
        "min_scale", "mod", "pi", "power", "radians", "round", "scale", "sign", "sqrt", "trim_scale", "trunc", "width_bucket",
        "acos", "acosd", "asin", "asind", "atan", "atand", "atan2", "atan2d", "cos", "cosd", "cot", "cotd", "sin", "sind",
        "tan", "tand", "sinh", "cosh", "tanh", "asinh", "acosh", "atanh", "random", "to_char", "to_number",
        // Text and bytes.
        "ascii", "bit_length", "btrim", "char_length", "character_length", "chr", "concat", "concat_ws", "format", "initcap",
        "left", "length", "lower", "lpad", "ltrim", "md5", "normalize", "octet_length", "overlay", "position", "quote_ident",
        "quote_literal", "quote_nullable", "regexp_count", "regexp_instr", "regexp_like", "regexp_match", "regexp_matches",
        "regexp_replace", "regexp_split_to_array", "regexp_split_to_table", "regexp_substr", "repeat", "replace", "reverse",
        "right", "rpad", "rtrim", "split_part", "starts_with", "string_to_array", "string_to_table", "strpos", "substr",
        "substring", "to_ascii", "to_hex", "translate", "unistr", "upper", "encode", "decode", "convert", "convert_from",
        "convert_to", "get_bit", "get_byte", "set_bit", "set_byte", "sha224", "sha256", "sha384", "sha512", "textlen",
        // Dates and times.
        "age", "clock_timestamp", "date_bin", "date_part", "date_trunc", "extract", "isfinite", "justify_days",
        "justify_hours", "justify_interval", "make_date", "make_interval", "make_time", "make_timestamp", "make_timestamptz",
        "now", "statement_timestamp", "timeofday", "transaction_timestamp", "to_date", "to_timestamp", "timezone", "overlaps",
        // Bounded by the template's statement_timeout (and its literal by the lexical rules).
        "pg_sleep(double precision)",
        // JSON.
        "to_json", "to_jsonb", "array_to_json", "row_to_json", "json_build_array", "json_build_object", "jsonb_build_array",
        "jsonb_build_object", "json_object", "jsonb_object", "json_array_elements", "json_array_elements_text",
        "jsonb_array_elements", "jsonb_array_elements_text", "json_array_length", "jsonb_array_length", "json_each",
        "json_each_text", "jsonb_each", "jsonb_each_text", "json_extract_path", "json_extract_path_text",
        "jsonb_extract_path", "jsonb_extract_path_text", "json_object_keys", "jsonb_object_keys", "json_populate_record",
        "jsonb_populate_record", "json_populate_recordset", "jsonb_populate_recordset", "json_to_record", "jsonb_to_record",
        "json_to_recordset", "jsonb_to_recordset", "json_strip_nulls", "jsonb_strip_nulls", "jsonb_set", "jsonb_set_lax",
        "jsonb_insert", "jsonb_pretty", "json_typeof", "jsonb_typeof", "jsonb_path_exists", "jsonb_path_match",
        "jsonb_path_query", "jsonb_path_query_array", "jsonb_path_query_first", "jsonb_path_exists_tz", "jsonb_path_match_tz",
        "jsonb_path_query_tz", "jsonb_path_query_array_tz", "jsonb_path_query_first_tz",
        // Arrays, ranges, sets.
        "array_append", "array_cat", "array_dims", "array_fill", "array_length", "array_lower", "array_ndims",
        "array_position", "array_positions", "array_prepend", "array_remove", "array_replace", "array_upper",
        "array_to_string", "cardinality", "unnest", "trim_array", "generate_series", "generate_subscripts", "isempty",
        "lower_inc", "upper_inc", "lower_inf", "upper_inf", "range_merge", "int4range", "int8range", "numrange", "tsrange",
        "tstzrange", "daterange", "num_nulls", "num_nonnulls",
        // Aggregates.
        "avg", "bit_and", "bit_or", "bit_xor", "bool_and", "bool_or", "count", "every", "max", "min", "sum", "string_agg",
        "array_agg", "json_agg", "jsonb_agg", "json_object_agg", "jsonb_object_agg", "corr", "covar_pop", "covar_samp",
        "regr_avgx", "regr_avgy", "regr_count", "regr_intercept", "regr_r2", "regr_slope", "regr_sxx", "regr_sxy", "regr_syy",
        "stddev", "stddev_pop", "stddev_samp", "variance", "var_pop", "var_samp", "mode", "percentile_cont",
        "percentile_disc", "range_agg", "range_intersect_agg",
        // Window functions.
        "row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile", "lag", "lead", "first_value", "last_value",
        "nth_value",
        // Network addresses, UUIDs, text search (never ts_stat or ts_rewrite: they run SQL given as text), types.
        "host", "hostmask", "masklen", "netmask", "network", "broadcast", "family", "abbrev", "set_masklen",
        "inet_same_family", "inet_merge", "gen_random_uuid", "to_tsvector", "to_tsquery", "plainto_tsquery",
        "phraseto_tsquery", "websearch_to_tsquery", "ts_rank", "ts_rank_cd", "ts_headline", "setweight", "strip", "numnode",
        "querytree", "tsvector_to_array", "array_to_tsvector", "ts_delete", "ts_filter", "pg_typeof", "version",
        "current_database",
    ];

    /// <summary>Extensions whose functions never run, whatever a datasource lists: they open connections of their own.</summary>
    public static readonly IReadOnlyList<string> NeverExtensions = ["dblink", "postgres_fdw", "file_fdw", "adminpack", "lo", "pageinspect"];

    /// <summary>Name prefixes never accepted in a datasource's list (connections, SQL text, files, large objects).</summary>
    private static readonly string[] NeverPrefixes =
        ["dblink", "postgres_fdw", "query_to_", "cursor_to_", "table_to_", "schema_to_", "database_to_", "ts_stat", "ts_rewrite", "lo_", "pg_read", "pg_file"];

    public const int MaxExtensionFunctions = 50;

    /// <summary>
    /// Why <paramref name="qualified"/> cannot be on a datasource's list of extension functions, or null: it is
    /// <c>schema.function</c> in plain lower-case identifiers, outside <c>pg_catalog</c> and <c>information_schema</c>,
    /// and not of a family that opens connections or executes SQL text. At check time it must also resolve to a
    /// member of an installed extension other than <see cref="NeverExtensions"/>: a function a user created does not.
    /// </summary>
    public static string? ExtensionFunctionRefusal(string? qualified)
    {
        if (qualified is null || !System.Text.RegularExpressions.Regex.IsMatch(qualified, "^[a-z_][a-z0-9_]{0,62}\\.[a-z_][a-z0-9_]{0,62}$"))
        {
            return "An extension function is schema.function in lower-case letters, digits and '_' (e.g. public.similarity).";
        }
        var (schema, name) = (qualified[..qualified.IndexOf('.')], qualified[(qualified.IndexOf('.') + 1)..]);
        if (schema is "pg_catalog" or "information_schema" || schema.StartsWith("pg_temp", StringComparison.Ordinal))
        {
            return $"'{qualified}' is not an extension function: built-ins are on the gateway's own allow-list.";
        }
        if (NeverPrefixes.Any(p => name.StartsWith(p, StringComparison.Ordinal)))
        {
            return $"'{qualified}' can open connections, run SQL given as text or reach files: it can never be allowed.";
        }
        return null;
    }
}
