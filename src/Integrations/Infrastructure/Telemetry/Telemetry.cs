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

    public static readonly Counter<long> GovernedCalls = Meter.CreateCounter<long>(
        "integrations.governed_call.count", description: "Governed calls (tools.invoke, datasources.query) by kind, outcome and denying rule.");

    public static readonly Histogram<double> GovernedCallDuration = Meter.CreateHistogram<double>(
        "integrations.governed_call.duration", unit: "ms", description: "Duration of governed calls, admission to outcome.");
}
