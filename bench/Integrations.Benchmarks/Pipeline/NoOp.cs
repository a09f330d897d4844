using FluentValidation;
using Integrations.Common;
using MediatR;

namespace Integrations.Benchmarks.Pipeline;

/// <summary>
/// A request that does nothing, shaped like a real read slice (an <see cref="IOperation{TResponse}"/> with a scope
/// and a validator), so the pipeline benchmark measures the behaviors and not a handler.
/// </summary>
public static class NoOp
{
    public sealed record Query(int Value) : IOperation<int>
    {
        public static string Operation => "bench.noop";
        public static string Scope => Scopes.Read;
    }

    public sealed class Validator : AbstractValidator<Query>
    {
        public Validator() => RuleFor(x => x.Value).GreaterThanOrEqualTo(0);
    }

    public sealed class Handler : IRequestHandler<Query, Result<int>>
    {
        public Task<Result<int>> Handle(Query request, CancellationToken cancellationToken) => Task.FromResult(Result<int>.Ok(request.Value));
    }
}
