using Microsoft.Extensions.Configuration;

namespace Integrations.Features.Telemetry;

/// <summary>
/// How <see cref="CostAnomalies"/> judges an hour (<c>Integrations:Spend:CostAnomaly</c>): a subject's spend in the last
/// complete UTC hour is an anomaly when it is at least <see cref="Ratio"/> × its expected spend (the median of the same
/// hour on each of the <see cref="BaselineDays"/> days before, a day without spend counting as 0) and exceeds it by at
/// least <see cref="MinimumExcessCents"/>.
/// </summary>
public sealed class CostAnomalyOptions
{
    public const string Section = "Integrations:Spend:CostAnomaly";

    /// <summary>How often the last complete hour is judged (zero turns the job off); every pass within the hour after it re-judges it, so usage reported late still counts.</summary>
    public TimeSpan Interval { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>Observed over expected, at least; above 1 (at 1, an ordinary hour would be an anomaly).</summary>
    public decimal Ratio { get; set; } = 3m;

    /// <summary>Observed minus expected, at least: a new integration's first dollar, or a cent becoming ten, is not an anomaly.</summary>
    public decimal MinimumExcessCents { get; set; } = 500m;

    /// <summary>Days of the same hour the baseline is the median of, 1-28.</summary>
    public int BaselineDays { get; set; } = 7;

    public static CostAnomalyOptions FromConfiguration(IConfiguration configuration)
    {
        var options = configuration.GetSection(Section).Get<CostAnomalyOptions>() ?? new CostAnomalyOptions();
        if (options.Ratio <= 1m) throw new InvalidOperationException($"{Section}: Ratio must be above 1.");
        if (options.MinimumExcessCents < 0m) throw new InvalidOperationException($"{Section}: MinimumExcessCents must not be negative.");
        if (options.BaselineDays is < 1 or > 28) throw new InvalidOperationException($"{Section}: BaselineDays must be 1-28.");
        return options;
    }
}
