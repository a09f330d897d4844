using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Integrations.Infrastructure.Telemetry;

/// <summary>The service's own activity source and meter, named "Integrations".</summary>
public static class Telemetry
{
    public const string Name = "Integrations";

    public static readonly ActivitySource Source = new(Name);

    public static readonly Meter Meter = new(Name);

    public static readonly Histogram<double> OperationDuration = Meter.CreateHistogram<double>(
        "integrations.operation.duration", unit: "ms", description: "Duration of mediator operations.");

    public static readonly Counter<long> Operations = Meter.CreateCounter<long>(
        "integrations.operation.count", description: "Mediator operations by outcome.");
}
