using System.Text.Json;
using FluentValidation;
using Integrations.Common;
using MediatR;

namespace Integrations.Pipeline;

/// <summary>Runs the request's FluentValidation validators; failures become 400 <c>validation_failed</c> with field errors.</summary>
internal sealed class ValidationBehavior<TRequest, TResponse>(IEnumerable<IValidator<TRequest>> validators)
    : IPipelineBehavior<TRequest, TResponse>
    where TRequest : IOperation
    where TResponse : IFallible<TResponse>
{
    public async Task<TResponse> Handle(TRequest request, CancellationToken cancellationToken, RequestHandlerDelegate<TResponse> next)
    {
        Dictionary<string, List<string>>? errors = null;
        foreach (var validator in validators)
        {
            var result = await validator.ValidateAsync(request, cancellationToken);
            foreach (var failure in result.Errors)
            {
                errors ??= [];
                var field = FieldName(failure.PropertyName);
                if (!errors.TryGetValue(field, out var messages)) errors[field] = messages = [];
                messages.Add(failure.ErrorMessage);
            }
        }
        if (errors is null) return await next();
        return TResponse.Fail(Error.Validation(errors.ToDictionary(e => e.Key, e => e.Value.ToArray())));
    }

    /// <summary>Names fields as the JSON body does: <c>Limits.RequestsPerMinute</c> → <c>limits.requests_per_minute</c>.</summary>
    internal static string FieldName(string propertyPath) =>
        string.Join('.', propertyPath.Split('.').Select(part =>
        {
            var bracket = part.IndexOf('[');
            return bracket < 0
                ? JsonNamingPolicy.SnakeCaseLower.ConvertName(part)
                : JsonNamingPolicy.SnakeCaseLower.ConvertName(part[..bracket]) + part[bracket..];
        }));
}
