using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Text.RegularExpressions;
using Integrations.Features.Integrations;
using Integrations.Infrastructure.Telemetry;
using Integrations.Tests.Support;

namespace Integrations.Tests.Platform;

public sealed class PipelineTests(ServiceFixture fixture) : IClassFixture<ServiceFixture>
{
    private ServiceHost Host => fixture.Host;

    [Fact]
    public async Task Each_request_gets_an_activity_named_by_its_operation_and_metrics_tagged_with_outcome()
    {
        var tenant = TestEnvironment.NewTenant();
        var activities = new List<Activity>();
        using var listener = new ActivityListener
        {
            ShouldListenTo = s => s.Name == Telemetry.Name,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = a => { lock (activities) activities.Add(a); },
        };
        ActivitySource.AddActivityListener(listener);
        var measurements = new List<(string Instrument, string? Operation, string? Outcome)>();
        using var meters = new MeterListener
        {
            InstrumentPublished = (instrument, l) => { if (instrument.Meter.Name == Telemetry.Name) l.EnableMeasurementEvents(instrument); },
        };
        void Record(Instrument instrument, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            string? Tag(ReadOnlySpan<KeyValuePair<string, object?>> all, string key)
            {
                foreach (var t in all) if (t.Key == key) return t.Value as string;
                return null;
            }
            var entry = (instrument.Name, Tag(tags, "operation"), Tag(tags, "outcome"));
            lock (measurements) measurements.Add(entry);
        }
        meters.SetMeasurementEventCallback<double>((i, _, tags, _) => Record(i, tags));
        meters.SetMeasurementEventCallback<long>((i, _, tags, _) => Record(i, tags));
        meters.Start();

        await Host.SendAsync(new CreateIntegration.Command("traced", "openai"), tenant);
        await Host.SendAsync(new GetIntegration.Query(Guid.NewGuid()), tenant);

        lock (activities)
        {
            Assert.Contains(activities, a => a.OperationName == "integrations.create" && a.Status != ActivityStatusCode.Error);
            Assert.Contains(activities, a => a.OperationName == "integrations.get" && (string?)a.GetTagItem("integrations.error.code") == "not_found");
        }
        lock (measurements)
        {
            Assert.Contains(("integrations.operation.count", "integrations.create", "ok"), measurements);
            Assert.Contains(("integrations.operation.duration", "integrations.create", "ok"), measurements);
            Assert.Contains(("integrations.operation.count", "integrations.get", "not_found"), measurements);
        }
    }

    [Fact]
    public void No_slice_uses_another_slices_types()
    {
        var features = Path.Combine(TestEnvironment.RepositoryRoot(), "src", "Integrations", "Features");
        var slices = Directory.GetFiles(features, "*.cs", SearchOption.AllDirectories)
            .Where(f => File.ReadAllText(f).Contains("IRequestHandler<"))
            .ToDictionary(f => Path.GetFileNameWithoutExtension(f), File.ReadAllText);
        Assert.NotEmpty(slices);

        var violations =
            from slice in slices
            from other in slices.Keys
            where other != slice.Key && Regex.IsMatch(slice.Value, $@"\b{other}\.")
            select $"{slice.Key} uses {other}";
        Assert.Empty(violations);
    }
}
