using System.Linq.Expressions;
using FluentValidation;
using Integrations.Common;
using Integrations.Tests.Support;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Tests.Platform;

/// <summary>
/// Validators are constructed for every request. FluentValidation caches the compiled accessor of a rule whose
/// expression is a member chain on the model (x => x.A.B) or the model itself (x => x), and compiles any other
/// expression again at every construction; that compilation was most of integrations.create's CPU under load.
/// </summary>
public sealed class ValidatorConstructionTests(ServiceFixture fixture) : IClassFixture<ServiceFixture>
{
    public static TheoryData<string> Validated()
    {
        var data = new TheoryData<string>();
        foreach (var type in ValidatorContracts()) data.Add(type.GenericTypeArguments[0].FullName!);
        return data;
    }

    [Theory]
    [MemberData(nameof(Validated))]
    public async Task Every_rule_has_an_accessor_fluentvalidation_caches(string requestType)
    {
        var contract = ValidatorContracts().Single(c => c.GenericTypeArguments[0].FullName == requestType);
        await using var scope = fixture.Host.Services.CreateAsyncScope();
        scope.ServiceProvider.GetRequiredService<CallerContext>().Set(TestEnvironment.CallerFor(TestEnvironment.NewTenant()));

        var validators = scope.ServiceProvider.GetServices(contract).Cast<IEnumerable<IValidationRule>>().ToList();
        Assert.NotEmpty(validators);
        foreach (var validator in validators)
        {
            foreach (var rule in validator)
            {
                var cacheable = rule.Member is not null || rule.Expression?.Body is ParameterExpression;
                Assert.True(cacheable, $"{validator.GetType()}: the rule for '{rule.Expression}' is compiled at every construction; " +
                                       "use a member chain on the model (x => x.A.B) or a model-level rule (RuleFor(x => x).Custom(...)).");
            }
        }
    }

    private static IEnumerable<Type> ValidatorContracts() =>
        typeof(IntegrationsServiceCollection).Assembly.GetTypes()
            .Where(t => t is { IsClass: true, IsAbstract: false, IsGenericTypeDefinition: false })
            .SelectMany(t => t.GetInterfaces())
            .Where(i => i.IsGenericType && i.GetGenericTypeDefinition() == typeof(IValidator<>))
            .Distinct();
}
