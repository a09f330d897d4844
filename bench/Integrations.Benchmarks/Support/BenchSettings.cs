using System.Globalization;

namespace Integrations.Benchmarks.Support;

/// <summary>
/// Sizes and durations of every benchmark, from the environment. The defaults are the full suite the issue asks
/// for; <c>BENCH_PROFILE=smoke</c> shrinks every default so the harness can be checked in seconds, and any
/// single <c>BENCH_*</c> variable still overrides its value.
/// </summary>
public sealed class BenchSettings
{
    public required bool Smoke { get; init; }
    public required IReadOnlyList<string> Stages { get; init; }

    public required string AdminConnectionString { get; init; }
    public required string ApiDll { get; init; }
    public required string OutputDirectory { get; init; }
    public required string ReportPath { get; init; }
    public required string Command { get; init; }
    public required string Commit { get; init; }
    public required bool PgFast { get; init; }
    /// <summary>Extra Npgsql connection-string options for the service under test (in process and the API host), e.g. "Max Auto Prepare=32".</summary>
    public required string ServiceConnectionOptions { get; init; }

    // 1. integrations.query at scale
    public required int SeedRows { get; init; }
    public required int SeedTenants { get; init; }
    public required int BigTenantRows { get; init; }
    public required int PageLimit { get; init; }
    public required int DeepPages { get; init; }
    public required int QueryIterations { get; init; }
    public required int QueryWarmup { get; init; }
    public required int Repetitions { get; init; }

    // 2. audited writes
    public required int AuditCallers { get; init; }
    public required int AuditTenants { get; init; }
    public required int AuditSeconds { get; init; }
    public required int AuditSingleTenantSeconds { get; init; }
    public required int AuditHttpSeconds { get; init; }
    public required int AuditWarmupSeconds { get; init; }
    public required int AuditCompareSeconds { get; init; }
    public required IReadOnlyList<string> AuditRuns { get; init; }

    // 3. pipeline overhead (BenchmarkDotNet)
    public required int PipelineIterations { get; init; }
    public required int PipelineWarmups { get; init; }
    public required int PipelineIterationMs { get; init; }

    // 4. tools.invoke gateway vs direct
    public required int InvokeRate { get; init; }
    public required int InvokeRateSeconds { get; init; }
    public required int InvokeCallers { get; init; }
    public required int InvokeSaturationSeconds { get; init; }
    public required int InvokeWarmupSeconds { get; init; }
    public required int InvokeRepetitions { get; init; }
    /// <summary>
    /// API host settings compared with the shipped ones in the same run (<c>BENCH_INVOKE_VARIANTS</c>, e.g.
    /// <c>spin0:DOTNET_ThreadPool_UnfairSemaphoreSpinLimit=0;wks:DOTNET_gcServer=0</c>): per variant a host of its own
    /// with those environment variables, its gateway runs beside direct runs of the same repetition.
    /// </summary>
    public required IReadOnlyList<(string Label, IReadOnlyDictionary<string, string> Environment)> InvokeVariants { get; init; }

    // 7 and 8. the MCP and LLM gateways against direct calls and a peer gateway (issues 13 and 14)
    public required int GatewayRate { get; init; }
    public required int GatewayRateSeconds { get; init; }
    public required int GatewayCallers { get; init; }
    public required int GatewaySaturationSeconds { get; init; }
    public required int GatewayWarmupSeconds { get; init; }
    public required int GatewayRepetitions { get; init; }
    /// <summary>bench/peers/node_modules: mcp-hub and the Portkey gateway, installed by ./build.sh bench.</summary>
    public required string PeersDirectory { get; init; }

    // 5. footprint
    public required int StartupRuns { get; init; }

    // 6. telemetry.summary
    public required int TelemetryRows { get; init; }
    public required int TelemetryTenants { get; init; }
    public required int TelemetryLoadSeconds { get; init; }
    public required int TelemetryIterations { get; init; }

    public static readonly string[] AllStages = ["pipeline", "startup", "query", "audit", "tools-invoke", "telemetry", "mcp-gateway", "llm-gateway"];

    public static BenchSettings FromEnvironment()
    {
        var smoke = Str("BENCH_PROFILE", "full") == "smoke";
        int Int(string name, int full, int smokeValue) =>
            int.Parse(Str(name, (smoke ? smokeValue : full).ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture);

        var stages = Str("BENCH_STAGES", "all");
        return new BenchSettings
        {
            Smoke = smoke,
            Stages = stages == "all" ? AllStages : stages.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries),
            AdminConnectionString = Required("BENCH_DB"),
            ApiDll = Required("BENCH_API_DLL"),
            OutputDirectory = Required("BENCH_OUT"),
            ReportPath = Required("BENCH_REPORT"),
            Command = Str("BENCH_COMMAND", "./build.sh bench"),
            Commit = Str("BENCH_COMMIT", "?"),
            PgFast = Str("INTEGRATIONS_PG_FAST", "0") == "1",
            ServiceConnectionOptions = Str("BENCH_SERVICE_CONNECTION_OPTIONS", ""),

            SeedRows = Int("BENCH_SEED_ROWS", 1_000_000, 20_000),
            SeedTenants = Int("BENCH_SEED_TENANTS", 10_000, 200),
            BigTenantRows = Int("BENCH_BIG_TENANT_ROWS", 100_000, 6_000),
            PageLimit = Int("BENCH_PAGE_LIMIT", 50, 50),
            DeepPages = Int("BENCH_DEEP_PAGES", 1_000, 100),
            QueryIterations = Int("BENCH_QUERY_ITERATIONS", 1_000, 60),
            QueryWarmup = Int("BENCH_QUERY_WARMUP", 200, 20),
            Repetitions = Int("BENCH_REPETITIONS", 3, 2),

            AuditCallers = Int("BENCH_AUDIT_CALLERS", 64, 64),
            AuditTenants = Int("BENCH_AUDIT_TENANTS", 64, 64),
            AuditSeconds = Int("BENCH_AUDIT_SECONDS", 60, 4),
            AuditSingleTenantSeconds = Int("BENCH_AUDIT_SINGLE_TENANT_SECONDS", 30, 3),
            AuditHttpSeconds = Int("BENCH_AUDIT_HTTP_SECONDS", 60, 4),
            AuditWarmupSeconds = Int("BENCH_AUDIT_WARMUP_SECONDS", 30, 1),
            AuditCompareSeconds = Int("BENCH_AUDIT_COMPARE_SECONDS", 20, 3),
            AuditRuns = Str("BENCH_AUDIT_RUNS", "limit,mediator-many,mediator-many-unprepared,mediator-one,http-many").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries),

            PipelineIterations = Int("BENCH_PIPELINE_ITERATIONS", 15, 3),
            PipelineWarmups = Int("BENCH_PIPELINE_WARMUPS", 5, 1),
            PipelineIterationMs = Int("BENCH_PIPELINE_ITERATION_MS", 250, 50),

            InvokeRate = Int("BENCH_INVOKE_RATE", 200, 200),
            InvokeRateSeconds = Int("BENCH_INVOKE_RATE_SECONDS", 20, 3),
            InvokeCallers = Int("BENCH_INVOKE_CALLERS", 64, 64),
            InvokeSaturationSeconds = Int("BENCH_INVOKE_SATURATION_SECONDS", 20, 3),
            InvokeWarmupSeconds = Int("BENCH_INVOKE_WARMUP_SECONDS", 30, 1),
            InvokeRepetitions = Int("BENCH_INVOKE_REPETITIONS", 3, 1),
            InvokeVariants = Variants(Str("BENCH_INVOKE_VARIANTS", "")),

            GatewayRate = Int("BENCH_GATEWAY_RATE", 200, 200),
            GatewayRateSeconds = Int("BENCH_GATEWAY_RATE_SECONDS", 15, 3),
            GatewayCallers = Int("BENCH_GATEWAY_CALLERS", 64, 64),
            GatewaySaturationSeconds = Int("BENCH_GATEWAY_SATURATION_SECONDS", 15, 3),
            GatewayWarmupSeconds = Int("BENCH_GATEWAY_WARMUP_SECONDS", 5, 1),
            GatewayRepetitions = Int("BENCH_GATEWAY_REPETITIONS", 2, 1),
            PeersDirectory = Str("BENCH_PEERS", Path.GetFullPath("bench/peers/node_modules")),

            StartupRuns = Int("BENCH_STARTUP_RUNS", 5, 2),

            TelemetryRows = Int("BENCH_TELEMETRY_ROWS", 10_000_000, 200_000),
            TelemetryTenants = Int("BENCH_TELEMETRY_TENANTS", 1_000, 100),
            TelemetryLoadSeconds = Int("BENCH_TELEMETRY_LOAD_SECONDS", 1_200, 120),
            TelemetryIterations = Int("BENCH_TELEMETRY_ITERATIONS", 200, 20),
        };
    }

    public bool Runs(string stage) => Stages.Contains(stage);

    private static List<(string, IReadOnlyDictionary<string, string>)> Variants(string spec) =>
        spec.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(variant =>
        {
            var colon = variant.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0) throw new InvalidOperationException($"BENCH_INVOKE_VARIANTS: '{variant}' is not label:NAME=value,...");
            var environment = variant[(colon + 1)..].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(pair => pair.Split('=', 2))
                .ToDictionary(pair => pair[0], pair => pair.Length == 2 ? pair[1] : throw new InvalidOperationException($"BENCH_INVOKE_VARIANTS: '{pair[0]}' has no value"));
            return (variant[..colon], (IReadOnlyDictionary<string, string>)environment);
        }).ToList();

    private static string Str(string name, string fallback) =>
        Environment.GetEnvironmentVariable(name) is { Length: > 0 } value ? value : fallback;

    private static string Required(string name) =>
        Environment.GetEnvironmentVariable(name) is { Length: > 0 } value
            ? value
            : throw new InvalidOperationException($"{name} is not set: run the suite with ./build.sh bench.");
}
