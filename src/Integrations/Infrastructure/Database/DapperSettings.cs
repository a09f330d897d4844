using System.Data;
using Dapper;

namespace Integrations.Infrastructure.Database;

/// <summary>How Dapper maps rows for every slice: snake_case columns to PascalCase members, timestamps as UTC.</summary>
internal static class DapperSettings
{
    private static int _applied;

    public static void Apply()
    {
        if (Interlocked.Exchange(ref _applied, 1) == 1) return;
        DefaultTypeMap.MatchNamesWithUnderscores = true;
        SqlMapper.AddTypeHandler(new UtcTimestamps());
    }

    /// <summary>
    /// Npgsql reads a <c>timestamptz</c> as a <see cref="DateTime"/>; a row member, constructor parameter or scalar
    /// of type <see cref="DateTimeOffset"/> gets it as UTC. (Dapper writes <see cref="DateTimeOffset"/> parameters
    /// itself, without this handler: pass them in UTC, the only offset Npgsql accepts for <c>timestamptz</c>.)
    /// </summary>
    private sealed class UtcTimestamps : SqlMapper.TypeHandler<DateTimeOffset>
    {
        public override DateTimeOffset Parse(object value) => value switch
        {
            DateTime t => new DateTimeOffset(DateTime.SpecifyKind(t, DateTimeKind.Utc)),
            DateTimeOffset t => t.ToUniversalTime(),
            _ => throw new DataException($"A {value.GetType().Name} cannot be read as a timestamp."),
        };

        public override void SetValue(IDbDataParameter parameter, DateTimeOffset value)
        {
            parameter.DbType = DbType.DateTimeOffset;
            parameter.Value = value;
        }
    }
}
