using MediatR;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Pipeline.Governance;

/// <summary>The governed-call stage's services. Each kind is registered by its own area (<see cref="AddGovernedCallKind{TRequest,TKind}"/>).</summary>
public static class GovernedCallServices
{
    public static IServiceCollection AddGovernedCalls(this IServiceCollection services)
    {
        services.AddSingleton<RateLimiter>();
        services.AddSingleton<ArgumentValidator>();
        services.AddSingleton<GovernedTargetCache>();
        services.AddScoped<GovernedCallContext>();
        services.AddScoped<CallAdmission>();
        services.AddScoped<RateLimitStatus>();
        services.AddScoped<CallOutcomes>();
        services.AddScoped<GovernedCallStage>();
        services.AddSingleton<OutcomeJournal>();
        services.AddSingleton<OutcomeRecovery>();
        services.AddHostedService(sp => sp.GetRequiredService<OutcomeRecovery>());
        return services;
    }

    /// <summary>Makes <typeparamref name="TRequest"/> a governed call of kind <typeparamref name="TKind"/>.</summary>
    public static IServiceCollection AddGovernedCallKind<TRequest, TKind>(this IServiceCollection services)
        where TRequest : IGovernedCall
        where TKind : class, IGovernedCallKind<TRequest>
    {
        services.AddSingleton<IGovernedCallKind<TRequest>, TKind>();
        return services;
    }
}
