using System.Globalization;
using System.Text;

namespace Integrations.Infrastructure.Datasources;

/// <summary>A template that passed the lexical rules: its SQL with <c>@name</c> rewritten to <c>$n</c> in declared order.</summary>
public sealed record CheckedTemplate(string PositionalSql, IReadOnlyList<string> ParameterNames);

/// <summary>
/// The first wall of the SQL gateway, before anything reaches a datasource: a PostgreSQL-aware lexer (comments,
/// nested block comments, strings, E-strings, dollar quotes, quoted identifiers) and deny-by-default rules on its
/// tokens. A template must be exactly one statement that starts with SELECT or WITH, may not contain a word that
/// begins or forms a writing or session-changing statement, may not call a function known to escape a read-only
/// transaction (files, large objects, dblink, sequences, settings, signals, dynamic SQL), and names its
/// parameters as <c>@name</c>, each declared. The second wall is <see cref="SqlGateway.DescribeAsync"/>: the
/// datasource itself prepares and plans the statement in a READ ONLY transaction.
/// </summary>
public static class SqlTemplateGuard
{
    /// <summary>Words that begin or make up statements other than a plain read; refused wherever they appear unquoted.</summary>
    private static readonly HashSet<string> DeniedWords = new(StringComparer.Ordinal)
    {
        "insert", "update", "delete", "merge", "into", "truncate", "drop", "create", "alter", "grant", "revoke", "reassign",
        "copy", "set", "do", "call", "commit", "begin", "rollback", "savepoint", "prepare", "execute", "deallocate",
        "listen", "unlisten", "notify", "vacuum", "reindex", "refresh", "checkpoint", "discard",
    };

    private static readonly HashSet<string> DeniedFunctions = new(StringComparer.Ordinal)
    {
        "set_config", "nextval", "setval", "currval", "lastval", "pg_stat_file", "pg_terminate_backend",
        "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile", "pg_promote", "pg_switch_wal", "pg_notify",
        "query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema", "cursor_to_xml", "cursor_to_xmlschema",
        "loread", "lowrite", "pg_import_system_collations", "txid_current", "pg_current_xact_id",
        "pg_log_backend_memory_contexts", "pg_sleep_for", "pg_sleep_until", "pg_backup_start", "pg_backup_stop",
        "pg_start_backup", "pg_stop_backup", "pg_create_restore_point", "pg_export_snapshot",
    };

    private static readonly string[] DeniedFunctionPrefixes =
    [
        "pg_read_", "pg_ls_", "pg_file_", "lo_", "dblink", "pg_logical_", "pg_replication_", "pg_create_", "pg_drop_",
        "pg_advisory_", "pg_try_advisory_", "pg_stat_reset", "pg_wal_replay_", "binary_upgrade_",
    ];

    /// <summary>True for a function the gateway never lets a template call (checked on names, so schema qualification does not help).</summary>
    public static bool IsDeniedFunction(string name) =>
        DeniedFunctions.Contains(name) || DeniedFunctionPrefixes.Any(p => name.StartsWith(p, StringComparison.Ordinal));

    /// <summary>
    /// Checks <paramref name="sql"/> against the rules and rewrites its parameters. The error names the rule broken;
    /// <c>sql</c> or <c>parameters</c> is the field it belongs to.
    /// </summary>
    public static bool TryCheck(string sql, IReadOnlyList<string> declaredParameters, int timeoutMs,
        out CheckedTemplate? template, out string field, out string error)
    {
        template = null;
        field = "sql";
        if (!Lexer.TryTokenize(sql, out var tokens, out error)) return false;

        while (tokens.Count > 0 && tokens[^1].Kind == TokenKind.Semicolon) tokens.RemoveAt(tokens.Count - 1);
        if (tokens.Count == 0)
        {
            error = "The template is empty.";
            return false;
        }
        if (tokens.Any(t => t.Kind == TokenKind.Semicolon))
        {
            error = "A template is exactly one statement: ';' may only end it.";
            return false;
        }
        var first = tokens.First(t => t.Kind != TokenKind.Punctuation || t.Text != "(");
        if (first.Kind != TokenKind.Word || first.Text is not ("select" or "with"))
        {
            error = $"A template must be a read: it starts with SELECT or WITH, not '{first.Original}'.";
            return false;
        }

        for (var i = 0; i < tokens.Count; i++)
        {
            var token = tokens[i];
            if (token.Kind == TokenKind.Positional)
            {
                error = $"Positional parameters such as '{token.Original}' are not allowed: name parameters as @name and declare them.";
                return false;
            }
            if (token.Kind == TokenKind.Word && DeniedWords.Contains(token.Text))
            {
                error = $"'{token.Original}' is not allowed in a template: only a single read-only SELECT (or WITH ... SELECT) can run " +
                        "(quote an identifier with that name, e.g. \"" + token.Text + "\").";
                return false;
            }
            if (token.Kind == TokenKind.Word && token.Text is "for" && i + 1 < tokens.Count && tokens[i + 1] is { Kind: TokenKind.Word, Text: "share" or "key" or "no" })
            {
                error = "Row locks (FOR SHARE / FOR KEY SHARE / FOR NO KEY UPDATE) are not allowed in a template.";
                return false;
            }
            var isCall = token.Kind is TokenKind.Word or TokenKind.QuotedIdentifier
                && i + 1 < tokens.Count && tokens[i + 1] is { Kind: TokenKind.Punctuation, Text: "(" };
            if (!isCall) continue;
            var name = token.Kind == TokenKind.Word ? token.Text : token.Text.ToLowerInvariant();
            if (IsDeniedFunction(name))
            {
                error = $"The function '{name}' is not allowed in a template: it can read files, reach other servers, change state or run other SQL.";
                return false;
            }
            if (name == "pg_sleep" && !SleepFitsTimeout(tokens, i + 2, timeoutMs, out error)) return false;
        }

        var used = tokens.Where(t => t.Kind == TokenKind.Parameter).Select(t => t.Text).Distinct(StringComparer.Ordinal).ToList();
        var undeclared = used.Where(u => !declaredParameters.Contains(u, StringComparer.Ordinal)).ToList();
        if (undeclared.Count > 0)
        {
            error = $"The template uses undeclared parameter(s): {string.Join(", ", undeclared.Select(u => "@" + u))}. Declare each with its type.";
            return false;
        }
        var unused = declaredParameters.Where(d => !used.Contains(d, StringComparer.Ordinal)).ToList();
        if (unused.Count > 0)
        {
            field = "parameters";
            error = $"Declared parameter(s) not used in the SQL: {string.Join(", ", unused)}.";
            return false;
        }

        var rewritten = new StringBuilder(sql.Length);
        var position = 0;
        var end = tokens[^1].Start + tokens[^1].Length;
        foreach (var parameter in tokens.Where(t => t.Kind == TokenKind.Parameter))
        {
            rewritten.Append(sql, position, parameter.Start - position);
            rewritten.Append('$').Append(IndexOf(declaredParameters, parameter.Text) + 1);
            position = parameter.Start + parameter.Length;
        }
        rewritten.Append(sql, position, end - position);
        template = new CheckedTemplate(rewritten.ToString(), declaredParameters.ToList());
        error = string.Empty;
        return true;
    }

    private static int IndexOf(IReadOnlyList<string> names, string name)
    {
        for (var i = 0; i < names.Count; i++)
        {
            if (names[i] == name) return i;
        }
        return -1;
    }

    /// <summary>pg_sleep is allowed with one parameter (statement_timeout bounds it) or a literal no longer than the timeout.</summary>
    private static bool SleepFitsTimeout(List<Token> tokens, int argument, int timeoutMs, out string error)
    {
        error = string.Empty;
        var closes = argument + 1 < tokens.Count && tokens[argument + 1] is { Kind: TokenKind.Punctuation, Text: ")" };
        if (closes && tokens[argument].Kind == TokenKind.Parameter) return true;
        if (closes && tokens[argument].Kind == TokenKind.Number
            && double.TryParse(tokens[argument].Text, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds))
        {
            if (seconds * 1000 <= timeoutMs) return true;
            error = $"pg_sleep({tokens[argument].Text}) is longer than the template's timeout of {timeoutMs} ms.";
            return false;
        }
        error = "pg_sleep takes a number of seconds or one @parameter in a template.";
        return false;
    }

    internal enum TokenKind { Word, QuotedIdentifier, String, Number, Parameter, Positional, Operator, Punctuation, Semicolon }

    /// <summary>Text is lower-cased for words, unescaped for quoted identifiers, the name for parameters.</summary>
    internal sealed record Token(TokenKind Kind, string Text, string Original, int Start, int Length);

    internal static class Lexer
    {
        private const string OperatorChars = "+-*/<>=~!@#%^&|`?";

        public static bool TryTokenize(string sql, out List<Token> tokens, out string error)
        {
            tokens = [];
            error = string.Empty;
            var i = 0;
            while (i < sql.Length)
            {
                var c = sql[i];
                var start = i;
                if (char.IsWhiteSpace(c))
                {
                    i++;
                }
                else if (c == '-' && At(sql, i + 1) == '-')
                {
                    while (i < sql.Length && sql[i] != '\n' && sql[i] != '\r') i++;
                }
                else if (c == '/' && At(sql, i + 1) == '*')
                {
                    var depth = 0;
                    do
                    {
                        if (sql[i] == '/' && At(sql, i + 1) == '*') { depth++; i += 2; }
                        else if (sql[i] == '*' && At(sql, i + 1) == '/') { depth--; i += 2; }
                        else i++;
                    } while (depth > 0 && i < sql.Length);
                    if (depth > 0) return Fail("An unterminated /* comment.", out error);
                }
                else if (c == '\'')
                {
                    if (!SkipString(sql, ref i, backslashEscapes: false)) return Fail("An unterminated string literal.", out error);
                    tokens.Add(Make(TokenKind.String, sql, start, i));
                }
                else if ((c is 'e' or 'E') && At(sql, i + 1) == '\'')
                {
                    i++;
                    if (!SkipString(sql, ref i, backslashEscapes: true)) return Fail("An unterminated string literal.", out error);
                    tokens.Add(Make(TokenKind.String, sql, start, i));
                }
                else if (c == '"')
                {
                    var text = new StringBuilder();
                    i++;
                    while (true)
                    {
                        if (i >= sql.Length) return Fail("An unterminated quoted identifier.", out error);
                        if (sql[i] == '"')
                        {
                            if (At(sql, i + 1) == '"') { text.Append('"'); i += 2; continue; }
                            i++;
                            break;
                        }
                        text.Append(sql[i++]);
                    }
                    tokens.Add(new Token(TokenKind.QuotedIdentifier, text.ToString(), sql[start..i], start, i - start));
                }
                else if (c == '$' && char.IsAsciiDigit(At(sql, i + 1)))
                {
                    i++;
                    while (i < sql.Length && char.IsAsciiDigit(sql[i])) i++;
                    tokens.Add(Make(TokenKind.Positional, sql, start, i));
                }
                else if (c == '$')
                {
                    var tagEnd = i + 1;
                    while (tagEnd < sql.Length && IsWordChar(sql[tagEnd]) && sql[tagEnd] != '$') tagEnd++;
                    if (At(sql, tagEnd) != '$') return Fail("A stray '$': dollar quotes look like $tag$...$tag$.", out error);
                    var tag = sql[i..(tagEnd + 1)];
                    var close = sql.IndexOf(tag, tagEnd + 1, StringComparison.Ordinal);
                    if (close < 0) return Fail($"An unterminated dollar-quoted string {tag}.", out error);
                    i = close + tag.Length;
                    tokens.Add(Make(TokenKind.String, sql, start, i));
                }
                else if (c == '@' && IsWordStart(At(sql, i + 1)) && !FollowsOperator(sql, start))
                {
                    i++;
                    while (i < sql.Length && IsWordChar(sql[i]) && sql[i] != '$') i++;
                    tokens.Add(new Token(TokenKind.Parameter, sql[(start + 1)..i], sql[start..i], start, i - start));
                }
                else if (char.IsAsciiDigit(c) || (c == '.' && char.IsAsciiDigit(At(sql, i + 1))))
                {
                    while (i < sql.Length && (char.IsAsciiLetterOrDigit(sql[i]) || sql[i] == '.' || sql[i] == '_'
                                              || ((sql[i] is '+' or '-') && sql[i - 1] is 'e' or 'E'))) i++;
                    tokens.Add(Make(TokenKind.Number, sql, start, i));
                }
                else if (IsWordStart(c))
                {
                    while (i < sql.Length && IsWordChar(sql[i])) i++;
                    tokens.Add(new Token(TokenKind.Word, sql[start..i].ToLowerInvariant(), sql[start..i], start, i - start));
                }
                else if (c == ';')
                {
                    i++;
                    tokens.Add(Make(TokenKind.Semicolon, sql, start, i));
                }
                else if (OperatorChars.Contains(c))
                {
                    // An operator ends where a comment or a parameter (as in id=@id) starts.
                    while (i < sql.Length && OperatorChars.Contains(sql[i])
                           && !(sql[i] == '-' && At(sql, i + 1) == '-') && !(sql[i] == '/' && At(sql, i + 1) == '*')
                           && !(i > start && sql[i] == '@' && IsWordStart(At(sql, i + 1)) && !FollowsOperator(sql, i))) i++;
                    if (i == start) i++;
                    tokens.Add(Make(TokenKind.Operator, sql, start, i));
                }
                else if (c is '(' or ')' or '[' or ']' or ',' or '.' or ':')
                {
                    i++;
                    tokens.Add(Make(TokenKind.Punctuation, sql, start, i));
                }
                else if (c == '\\')
                {
                    return Fail("Backslash commands are not SQL and are not allowed.", out error);
                }
                else
                {
                    return Fail($"Unexpected character '{c}' in the template.", out error);
                }
            }
            return true;
        }

        private static Token Make(TokenKind kind, string sql, int start, int end) =>
            new(kind, kind == TokenKind.Word ? sql[start..end].ToLowerInvariant() : sql[start..end], sql[start..end], start, end - start);

        private static bool SkipString(string sql, ref int i, bool backslashEscapes)
        {
            i++; // opening quote
            while (i < sql.Length)
            {
                if (backslashEscapes && sql[i] == '\\') { i += 2; continue; }
                if (sql[i] == '\'')
                {
                    if (At(sql, i + 1) == '\'') { i += 2; continue; }
                    i++;
                    return true;
                }
                i++;
            }
            return false;
        }

        /// <summary>'@' ends the operators &lt;@ and @@ (and continues @-@), so right after '&lt;' or '@' it is not a parameter; after '=' it is.</summary>
        private static bool FollowsOperator(string sql, int start) => start > 0 && sql[start - 1] is '<' or '@';

        private static char At(string sql, int index) => index < sql.Length ? sql[index] : '\0';

        private static bool IsWordStart(char c) => char.IsLetter(c) || c == '_' || c > 127;

        private static bool IsWordChar(char c) => char.IsLetterOrDigit(c) || c == '_' || c == '$' || c > 127;

        private static bool Fail(string message, out string error)
        {
            error = message;
            return false;
        }
    }
}
