using FluentValidation;
using Integrations.Common;
using Integrations.Infrastructure.Http;
using Integrations.Infrastructure.Workers;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.Workers;

/// <summary>
/// workers.list: every background job of the replica that answers, by name, with its last pass (start, duration,
/// outcome, what it did or its error) and its next. The jobs work for every tenant; what they report names no tenant.
/// </summary>
public static class ListWorkers
{
    public sealed record Query(int Limit = 50, string? Cursor = null) : IOperation<Page<Worker>>
    {
        public static string Operation => "workers.list";
        public static string Scope => Scopes.Admin;
    }

    public static readonly string[] Statuses = [WorkerRegistry.Off, WorkerRegistry.Waiting, WorkerRegistry.Running];
    public static readonly string[] Outcomes = [WorkerRegistry.Succeeded, WorkerRegistry.Failed];

    /// <param name="Name">The job's name, e.g. <c>integrations.health_sweep</c>.</param>
    /// <param name="Status"><c>off</c> (its interval is zero), <c>waiting</c> or <c>running</c>.</param>
    /// <param name="IntervalSeconds">Seconds between passes; null for a job that runs when woken.</param>
    /// <param name="LastOutcome">null before the first pass.</param>
    /// <param name="LastResult">What the last successful pass did, in words.</param>
    /// <param name="LastError">The last failed pass's error (type and message), kept after later passes succeed.</param>
    public sealed record Worker(
        string Name, string Description, [OneOf(typeof(ListWorkers), nameof(Statuses))] string Status, double? IntervalSeconds,
        DateTimeOffset? LastStartedAt, DateTimeOffset? LastFinishedAt, double? LastDurationMs,
        [OneOf(typeof(ListWorkers), nameof(Outcomes))] string? LastOutcome, string? LastResult,
        string? LastError, DateTimeOffset? LastErrorAt, DateTimeOffset? NextRunAt, long Runs, long Failures);

    internal sealed class Validator : AbstractValidator<Query>
    {
        public Validator()
        {
            RuleFor(x => x.Limit).PageLimit();
            RuleFor(x => x.Cursor).NameCursor();
        }
    }

    internal sealed class Handler(WorkerRegistry registry) : IRequestHandler<Query, Result<Page<Worker>>>
    {
        public Task<Result<Page<Worker>>> Handle(Query request, CancellationToken ct)
        {
            Cursor.TryDecodeName(request.Cursor, out var after);
            var rows = registry.List().Where(w => after is null || string.CompareOrdinal(w.Name, after) > 0).Take(request.Limit + 1).ToList();
            Result<Page<Worker>> page = Paging.ToPage(rows, request.Limit, ToWorker, w => Cursor.EncodeName(w.Name));
            return Task.FromResult(page);
        }

        private static Worker ToWorker(WorkerSnapshot w) => new(
            w.Name, w.Description, w.Status, w.Interval?.TotalSeconds, w.LastStartedAt, w.LastFinishedAt, w.LastDuration?.TotalMilliseconds,
            w.LastOutcome, w.LastResult, w.LastError, w.LastErrorAt, w.NextRunAt, w.Runs, w.Failures);
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/", async ([FromQuery] int? limit, [FromQuery] string? cursor, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(limit ?? 50, cursor), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("List the background jobs of the answering replica (scope admin), by name: last run, duration, outcome, next run, last error.")
            .Produces<Page<Worker>>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status403Forbidden);
}
