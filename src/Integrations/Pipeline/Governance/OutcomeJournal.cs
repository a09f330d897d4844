using System.Globalization;
using System.Text.Json;
using Integrations.Common;
using Integrations.Features.Incidents;
using Integrations.Infrastructure.Audit;
using Microsoft.Extensions.Configuration;
using Npgsql;
using NpgsqlTypes;

namespace Integrations.Pipeline.Governance;

/// <summary>
/// A governed call's outcome that could not be written because PostgreSQL was unreachable: its events, the kind's
/// record statements and the incident it opens, kept on local disk until <see cref="OutcomeJournalReplay"/> writes them.
/// </summary>
public sealed record JournaledOutcome(
    Guid CallId,
    string TenantId,
    string Actor,
    string CorrelationId,
    IReadOnlyList<JournaledOutcome.Event> Events,
    IReadOnlyList<JournaledOutcome.Statement> Statements,
    IncidentReport? Incident,
    Guid? IncidentPlaceholder)
{
    public sealed record Event(string Action, string SubjectType, string SubjectId, JsonElement Details);

    public sealed record Statement(string Sql, IReadOnlyList<Parameter> Parameters);

    /// <summary>A parameter as its PostgreSQL type and invariant text; null for SQL NULL.</summary>
    public sealed record Parameter(NpgsqlDbType Type, string? Value);

    internal static JournaledOutcome From(AuditWrite write, NpgsqlBatch statements, IncidentReport? incident, Guid? incidentPlaceholder, Guid callId) => new(
        callId, write.Caller.TenantId, write.Caller.Actor, write.CorrelationId ?? callId.ToString(),
        write.Events.Select((e, i) => new Event(e.Action, e.SubjectType, e.SubjectId, JsonDocument.Parse(write.DetailsJson[i]).RootElement.Clone())).ToList(),
        statements.BatchCommands.Cast<NpgsqlBatchCommand>().Select(c => new Statement(c.CommandText, c.Parameters.Select(p => ToParameter(p)).ToList())).ToList(),
        incident, incidentPlaceholder);

    /// <summary>The events as a write of <paramref name="actualIncident"/> (the placeholder id replaced by the incident's real one).</summary>
    internal AuditWrite ToAuditWrite(Guid? actualIncident) => new(
        new Caller(TenantId, Actor, new HashSet<string>()),
        Events.Select(e => new AuditEvent(e.Action, e.SubjectType, e.SubjectId, Replace(e.Details, actualIncident))).ToList(),
        CorrelationId);

    internal void AddStatementsTo(NpgsqlBatch batch, Guid? actualIncident)
    {
        foreach (var statement in Statements)
        {
            var command = new NpgsqlBatchCommand(statement.Sql);
            foreach (var p in statement.Parameters) command.Parameters.Add(FromParameter(p, IncidentPlaceholder, actualIncident));
            batch.BatchCommands.Add(command);
        }
    }

    private JsonElement Replace(JsonElement details, Guid? actualIncident) =>
        IncidentPlaceholder is { } placeholder && actualIncident is { } actual && placeholder != actual
            ? JsonDocument.Parse(details.GetRawText().Replace(placeholder.ToString(), actual.ToString(), StringComparison.Ordinal)).RootElement.Clone()
            : details;

    private static Parameter ToParameter(NpgsqlParameter parameter)
    {
        var value = parameter.Value;
        var text = value switch
        {
            null or DBNull => null,
            DateTime time => time.ToUniversalTime().ToString("O", CultureInfo.InvariantCulture),
            IFormattable formattable => formattable.ToString(null, CultureInfo.InvariantCulture),
            string s => s,
            _ => throw new NotSupportedException($"A parameter of type {value.GetType().Name} cannot be journaled."),
        };
        return new Parameter(parameter.NpgsqlDbType, text);
    }

    private static NpgsqlParameter FromParameter(Parameter parameter, Guid? placeholder, Guid? actual)
    {
        object value = parameter.Value is not { } text ? DBNull.Value : parameter.Type switch
        {
            NpgsqlDbType.Uuid => Replaced(Guid.Parse(text), placeholder, actual),
            NpgsqlDbType.Text or NpgsqlDbType.Varchar or NpgsqlDbType.Jsonb => text,
            NpgsqlDbType.Double => double.Parse(text, CultureInfo.InvariantCulture),
            NpgsqlDbType.Integer => int.Parse(text, CultureInfo.InvariantCulture),
            NpgsqlDbType.Bigint => long.Parse(text, CultureInfo.InvariantCulture),
            NpgsqlDbType.Numeric => decimal.Parse(text, CultureInfo.InvariantCulture),
            NpgsqlDbType.Boolean => bool.Parse(text),
            NpgsqlDbType.TimestampTz => DateTime.Parse(text, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind).ToUniversalTime(),
            _ => throw new NotSupportedException($"A journaled parameter of type {parameter.Type} cannot be read back."),
        };
        return new NpgsqlParameter { NpgsqlDbType = parameter.Type, Value = value };
    }

    private static Guid Replaced(Guid id, Guid? placeholder, Guid? actual) => id == placeholder && actual is { } real ? real : id;
}

/// <summary>
/// The local, durable journal of outcomes PostgreSQL could not take: one file per outcome under
/// <c>{Integrations:DataDirectory}/outcome-journal</c> (default <c>.data/outcome-journal</c>), written to a temporary
/// name, flushed to disk (fsync) and renamed, so a file that exists is whole. <see cref="OutcomeJournalReplay"/> writes
/// them when the database is back and deletes each once it is committed.
/// </summary>
public sealed class OutcomeJournal
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    public OutcomeJournal(IConfiguration configuration)
    {
        var dataDirectory = configuration["Integrations:DataDirectory"] is { Length: > 0 } configured ? configured : ".data";
        Directory = Path.GetFullPath(Path.Combine(dataDirectory, "outcome-journal"));
    }

    public string Directory { get; }

    /// <summary>Whether a connection-level failure (not a refusal of the statements) kept the outcome out of PostgreSQL.</summary>
    public static bool IsUnreachable(Exception e) => e switch
    {
        PostgresException pg => pg.SqlState.StartsWith("08", StringComparison.Ordinal)
            || pg.SqlState is PostgresErrorCodes.AdminShutdown or PostgresErrorCodes.CrashShutdown or PostgresErrorCodes.CannotConnectNow
                or PostgresErrorCodes.TooManyConnections,
        NpgsqlException or TimeoutException => true,
        _ => false,
    };

    public async Task AppendAsync(JournaledOutcome outcome)
    {
        System.IO.Directory.CreateDirectory(Directory);
        var path = Path.Combine(Directory, $"{DateTime.UtcNow:yyyyMMddHHmmssfffffff}-{outcome.CallId:N}.json");
        var temporary = path + ".tmp";
        await using (var file = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, 4096, FileOptions.WriteThrough))
        {
            await JsonSerializer.SerializeAsync(file, outcome, Json);
            file.Flush(flushToDisk: true);
        }
        File.Move(temporary, path);
    }

    /// <summary>The journaled outcomes, oldest first, with the file each is in.</summary>
    public IEnumerable<(string Path, JournaledOutcome Outcome)> Pending()
    {
        if (!System.IO.Directory.Exists(Directory)) yield break;
        foreach (var path in System.IO.Directory.GetFiles(Directory, "*.json").Order(StringComparer.Ordinal))
        {
            JournaledOutcome? outcome;
            using (var file = File.OpenRead(path)) outcome = JsonSerializer.Deserialize<JournaledOutcome>(file, Json);
            if (outcome is not null) yield return (path, outcome);
        }
    }

    public bool HasPending => System.IO.Directory.Exists(Directory) && System.IO.Directory.EnumerateFiles(Directory, "*.json").Any();
}
