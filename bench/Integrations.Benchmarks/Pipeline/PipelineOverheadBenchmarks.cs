using BenchmarkDotNet.Attributes;
using FluentValidation;
using Integrations.Benchmarks.Support;
using Integrations.Common;
using MediatR;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;

namespace Integrations.Benchmarks.Pipeline;

/// <summary>
/// Benchmark 3: a no-op request through the full behavior chain (Tracing → Authorization → Validation → handler;
/// the Audit behavior's constraint leaves a non-audited request alone, and its cost is a database transaction,
/// measured by benchmark 2) against the handler called directly.
/// <c>Telemetry = host</c> subscribes the OpenTelemetry SDK to the service's source and meter as the API host does
/// (always-on sampling, no exporter), so the tracing behavior's activity and metrics are really recorded.
/// </summary>
[MemoryDiagnoser]
public class PipelineOverheadBenchmarks
{
    private readonly NoOp.Query _query = new(1);
    private readonly NoOp.Handler _handler = new();
    private readonly Caller _caller = InProcessService.CallerFor("bench-pipeline");
    private InProcessService _service = null!;
    private AsyncServiceScope _scope;
    private IMediator _mediator = null!;
    private TracerProvider? _tracer;
    private MeterProvider? _meter;

    [Params("off", "host")]
    public string Telemetry { get; set; } = "off";

    [GlobalSetup]
    public void Setup()
    {
        // The database is never reached: the data source is built lazily and the no-op handler does not ask for it.
        _service = InProcessService.Create("Host=127.0.0.1;Port=1;Database=none;Username=none", services =>
        {
            services.AddTransient<IRequestHandler<NoOp.Query, Result<int>>, NoOp.Handler>();
            services.AddScoped<IValidator<NoOp.Query>, NoOp.Validator>();
        });
        _scope = _service.Services.CreateAsyncScope();
        _scope.ServiceProvider.GetRequiredService<CallerContext>().Set(_caller);
        _mediator = _scope.ServiceProvider.GetRequiredService<IMediator>();
        if (Telemetry == "host")
        {
            _tracer = Sdk.CreateTracerProviderBuilder().AddSource(Infrastructure.Telemetry.Telemetry.Name).Build();
            _meter = Sdk.CreateMeterProviderBuilder().AddMeter(Infrastructure.Telemetry.Telemetry.Name).Build();
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _tracer?.Dispose();
        _meter?.Dispose();
        _scope.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _service.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }

    [Benchmark(Baseline = true, Description = "handler called directly")]
    public Task<Result<int>> HandlerDirect() => _handler.Handle(_query, CancellationToken.None);

    [Benchmark(Description = "IMediator.Send, full behavior chain")]
    public Task<Result<int>> MediatorSend() => _mediator.Send(_query);

    [Benchmark(Description = "new scope + caller + IMediator.Send (per request, as HTTP and in-process callers do)")]
    public async Task<Result<int>> ScopeAndMediatorSend()
    {
        await using var scope = _service.Services.CreateAsyncScope();
        scope.ServiceProvider.GetRequiredService<CallerContext>().Set(_caller);
        return await scope.ServiceProvider.GetRequiredService<IMediator>().Send(_query);
    }
}
