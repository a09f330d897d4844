using System.Text.Json;
using Integrations.Infrastructure.Datasources;

namespace Integrations.Tests.Datasources;

/// <summary>The lexical wall of the SQL gateway, without a database: what it refuses, what it lets through, how it rewrites.</summary>
public sealed class SqlTemplateGuardTests
{
    private static (CheckedTemplate? Template, string Field, string Error) Check(string sql, int timeoutMs = 5000, params string[] parameters)
    {
        SqlTemplateGuard.TryCheck(sql, parameters, timeoutMs, out var template, out var field, out var error);
        return (template, field, error);
    }

    public static TheoryData<string, string> Refused() => new()
    {
        { "SELECT 1; DROP TABLE t", "one statement" },
        { "COMMIT; DELETE FROM t", "one statement" },
        { "/* x */ DELETE FROM t", "starts with SELECT or WITH" },
        { "-- SELECT\nDELETE FROM t", "starts with SELECT or WITH" },
        { "/* nested /* comment */ still a comment */ UPDATE t SET note = 'x'", "starts with SELECT or WITH" },
        { "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "'DELETE' is not allowed" },
        { "WITH i AS (INSERT INTO t VALUES (9, 'x') RETURNING *) SELECT * FROM i", "'INSERT' is not allowed" },
        { "COPY t TO PROGRAM 'id'", "starts with SELECT or WITH" },
        { "SET TRANSACTION READ WRITE", "starts with SELECT or WITH" },
        { "SELECT pg_sleep(10)", "longer than the template's timeout" },
        { "SELECT * INTO copy_of_t FROM t", "'INTO' is not allowed" },
        { "SELECT * FROM t FOR UPDATE", "'UPDATE' is not allowed" },
        { "SELECT * FROM t FOR SHARE", "Row locks" },
        { "DO $$ BEGIN DELETE FROM t; END $$", "starts with SELECT or WITH" },
        { "CALL p()", "starts with SELECT or WITH" },
        { "BEGIN; SELECT 1", "one statement" },
        { "EXPLAIN ANALYZE DELETE FROM t", "starts with SELECT or WITH" },
        { "SELECT $1", "Positional parameters" },
        { "SELECT 'unterminated", "unterminated string" },
        { "SELECT 1 /* unterminated", "unterminated /* comment" },
        { "SELECT $tag$ unterminated", "unterminated dollar-quoted" },
        { "\\copy t to 'x'", "Backslash" },
        { "", "empty" },
        { " ; ", "empty" },
    };

    [Theory]
    [MemberData(nameof(Refused))]
    public void Refuses_anything_but_one_read_only_statement(string sql, string reason)
    {
        var (template, field, error) = Check(sql);

        Assert.Null(template);
        Assert.Equal("sql", field);
        Assert.Contains(reason, error, StringComparison.OrdinalIgnoreCase);
    }

    public static TheoryData<string> Accepted() => new()
    {
        "SELECT 1",
        "select id, name from customers order by id limit 10;",
        "WITH top AS (SELECT * FROM customers WHERE tier = 'pro') SELECT count(*) FROM top",
        "(SELECT 1) UNION ALL (SELECT 2)",
        "SELECT 'DELETE FROM t; DROP TABLE t' AS harmless_text",
        "SELECT $q$ ; DELETE FROM t $q$ AS dollar_quoted, $$ ; $$ AS empty_tag",
        "SELECT \"delete\", \"update\" FROM (SELECT 1 AS \"delete\", 2 AS \"update\") AS x",
        "SELECT E'it\\'s; DROP TABLE t' AS escaped",
        "SELECT 1 -- ; DELETE FROM t",
        "SELECT pg_sleep(0.2)",
        "SELECT x::text, y::int FROM (VALUES (1, '2')) AS v(x, y)",
        "SELECT jsonb_build_object('a', 1) @> '{}'::jsonb",
        "SELECT current_setting('server_version'), now(), version()",
        "SELECT substring('abcdef' FROM 2 FOR 3)",
    };

    [Theory]
    [MemberData(nameof(Accepted))]
    public void Lets_plain_reads_through_whatever_their_strings_and_comments_say(string sql)
    {
        var (template, _, error) = Check(sql);

        Assert.True(template is not null, error);
    }

    [Fact]
    public void Rewrites_named_parameters_to_positions_in_declared_order_outside_strings_and_comments()
    {
        var (template, _, error) = Check(
            "SELECT * FROM customers WHERE tier = @tier AND id > @after /* @tier */ AND name <> '@after' AND id > @after",
            5000, "after", "tier");

        Assert.True(template is not null, error);
        Assert.Equal("SELECT * FROM customers WHERE tier = $2 AND id > $1 /* @tier */ AND name <> '@after' AND id > $1", template.PositionalSql);
        Assert.Equal(["after", "tier"], template.ParameterNames);
    }

    [Fact]
    public void A_trailing_semicolon_is_dropped_so_the_statement_can_be_wrapped()
    {
        Assert.Equal("SELECT 1", Check("SELECT 1 ;;").Template!.PositionalSql);
    }

    [Fact]
    public void Undeclared_and_unused_parameters_are_refused_on_the_right_field()
    {
        var undeclared = Check("SELECT * FROM t WHERE id = @id");
        Assert.Equal(("sql", true), (undeclared.Field, undeclared.Error.Contains("@id")));

        var unused = Check("SELECT 1", 5000, "id");
        Assert.Equal(("parameters", true), (unused.Field, unused.Error.Contains("id")));
    }

    [Fact]
    public void Pg_sleep_is_allowed_with_a_parameter_and_with_a_literal_within_the_timeout_only()
    {
        Assert.NotNull(Check("SELECT pg_sleep(@seconds)", 500, "seconds").Template);
        Assert.NotNull(Check("SELECT pg_sleep(0.5)", 500).Template);
        Assert.Null(Check("SELECT pg_sleep(0.6)", 500).Template);
        Assert.Null(Check("SELECT pg_sleep(1 + 1)", 5000).Template);
    }

    [Fact]
    public void A_parameter_written_right_after_a_comparison_is_still_a_parameter()
    {
        var (template, _, error) = Check("SELECT * FROM t WHERE id=@id OR id<>@id", 5000, "id");

        Assert.True(template is not null, error);
        Assert.Equal("SELECT * FROM t WHERE id=$1 OR id<>$1", template.PositionalSql);
    }

    [Fact]
    public void Operators_containing_at_signs_are_not_parameters()
    {
        var (template, _, error) = Check("SELECT ARRAY[1] <@ARRAY[1, 2], @ -5, to_tsvector('a') @@to_tsquery('a')");

        Assert.True(template is not null, error);
        Assert.Empty(template.ParameterNames);
    }
}
