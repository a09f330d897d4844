using Microsoft.Extensions.Configuration;

namespace Integrations.Infrastructure.Mcp;

/// <summary>Settings of the MCP client side, bound from <c>Integrations:Mcp</c>.</summary>
public sealed class McpOptions
{
    public const string Section = "Integrations:Mcp";

    /// <summary>Bound on initialize, tools/list and ping, each attempt (connecting included).</summary>
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Default bound on one tools/call when the caller gives none.</summary>
    public TimeSpan CallTimeout { get; set; } = TimeSpan.FromSeconds(60);

    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Largest HTTP response body (or the whole SSE stream of one request) accepted from a server.</summary>
    public long MaxResponseBytes { get; set; } = 4 * 1024 * 1024;

    /// <summary>Live sessions held at most; the least recently used goes first.</summary>
    public int MaxSessions { get; set; } = 256;

    /// <summary>A session unused this long is closed.</summary>
    public TimeSpan IdleTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>Retries of idempotent requests (initialize, tools/list, ping) after a transient failure. tools/call is never retried.</summary>
    public int RetryAttempts { get; set; } = 2;

    public TimeSpan RetryDelay { get; set; } = TimeSpan.FromMilliseconds(200);

    /// <summary>Per server: the share of failed requests within the sampling window that opens the circuit.</summary>
    public double BreakerFailureRatio { get; set; } = 0.5;

    public int BreakerMinimumThroughput { get; set; } = 5;

    public TimeSpan BreakerSamplingDuration { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How long an open circuit refuses requests before letting one through to test the server.</summary>
    public TimeSpan BreakerBreakDuration { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>A health probe slower than this reports the server as degraded.</summary>
    public TimeSpan DegradedLatency { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// How often the background sweep checks servers' health; zero turns it off. When unset, the service-wide
    /// <c>Integrations:Health:SweepInterval</c> applies, so one setting can stop every sweep.
    /// </summary>
    public TimeSpan HealthSweepInterval { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>tools/list pages followed at most, and tools accepted at most, before the server is refused.</summary>
    public int MaxToolPages { get; set; } = 50;

    public int MaxTools { get; set; } = 1000;

    /// <summary>Null negotiates (newest first, falling back to initialize); a version pins it.</summary>
    public string? ProtocolVersion { get; set; }

    public static McpOptions FromConfiguration(IConfiguration configuration)
    {
        var options = configuration.GetSection(Section).Get<McpOptions>() ?? new McpOptions();
        if (configuration[$"{Section}:{nameof(HealthSweepInterval)}"] is null
            && configuration.GetValue<TimeSpan?>("Integrations:Health:SweepInterval") is { } shared)
        {
            options.HealthSweepInterval = shared;
        }
        if (options.RequestTimeout <= TimeSpan.Zero || options.CallTimeout <= TimeSpan.Zero || options.ConnectTimeout <= TimeSpan.Zero)
        {
            throw new InvalidOperationException($"{Section}: RequestTimeout, CallTimeout and ConnectTimeout must be positive.");
        }
        if (options.MaxResponseBytes < 1024 || options.MaxSessions < 1 || options.MaxToolPages < 1 || options.MaxTools < 1)
        {
            throw new InvalidOperationException($"{Section}: MaxResponseBytes (>= 1024), MaxSessions, MaxToolPages and MaxTools must be positive.");
        }
        // Polly's own limits, checked here so a bad value stops start-up instead of the first call to a server.
        if (options.RetryAttempts is < 0 or > 10 || options.BreakerFailureRatio is <= 0 or > 1 || options.BreakerMinimumThroughput < 2
            || options.BreakerSamplingDuration < TimeSpan.FromMilliseconds(500) || options.BreakerBreakDuration < TimeSpan.FromMilliseconds(500))
        {
            throw new InvalidOperationException(
                $"{Section}: RetryAttempts must be 0-10, BreakerFailureRatio in (0, 1], BreakerMinimumThroughput at least 2, " +
                "BreakerSamplingDuration and BreakerBreakDuration at least 0.5 s.");
        }
        return options;
    }
}
