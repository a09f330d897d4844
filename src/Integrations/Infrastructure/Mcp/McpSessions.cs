using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Integrations.Common;
using Integrations.Infrastructure.Network;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using ModelContextProtocol;
using ModelContextProtocol.Client;
using ModelContextProtocol.Protocol;
using Polly;
using Polly.CircuitBreaker;
using Polly.Retry;
using Polly.Timeout;

namespace Integrations.Infrastructure.Mcp;

/// <summary>
/// The MCP client side of the service. Keeps one live, initialized session per (tenant, server) and reuses it;
/// re-initializes when the server ends the session; closes sessions on request (server deleted), when the
/// credential changes, when idle, and when more than <see cref="McpOptions.MaxSessions"/> are open (least recently
/// used first). Every connection goes through the <see cref="SsrfGuard"/> handler (resolve, check, connect to the
/// checked address, no redirects) and every response is capped at <see cref="McpOptions.MaxResponseBytes"/>.
/// initialize, tools/list and ping run under a timeout and retry; each server has its own circuit breaker;
/// tools/call is never retried once sent.
/// </summary>
public sealed class McpSessions : IAsyncDisposable
{
    public const string ClientName = "integrations";

    /// <summary>The revision without sessions or ping (server/discover instead of initialize).</summary>
    private const string SessionlessProtocol = "2026-07-28";

    private static readonly ResiliencePropertyKey<TimeSpan> TimeoutKey = new("mcp.timeout");
    private static readonly ResiliencePropertyKey<bool> RetryableKey = new("mcp.retryable");

    private readonly McpOptions _options;
    private readonly ILogger<McpSessions> _logger;
    private readonly TimeProvider _time;
    private readonly HttpMessageHandler _handler;
    private readonly SsrfGuard _guard;
    private readonly ConcurrentDictionary<SessionKey, Slot> _slots = new();
    private readonly ConcurrentDictionary<SessionKey, ResiliencePipeline> _serverPipelines = new();
    private readonly ResiliencePipeline _unregisteredPipeline;
    private readonly ITimer _idleSweep;

    public McpSessions(McpOptions options, SsrfGuard guard, ILogger<McpSessions> logger, TimeProvider? time = null)
    {
        _options = options;
        _logger = logger;
        _time = time ?? TimeProvider.System;
        _guard = guard;
        // One handler for every session: connections are pooled per origin and each new one is guard-checked.
        _handler = new McpResponseSizeLimit(options.MaxResponseBytes) { InnerHandler = guard.CreateHandler(options.ConnectTimeout) };
        _unregisteredPipeline = BuildPipeline(withBreaker: false);
        var sweepEvery = TimeSpan.FromTicks(Math.Clamp(options.IdleTimeout.Ticks / 2, TimeSpan.TicksPerSecond, TimeSpan.TicksPerMinute));
        _idleSweep = _time.CreateTimer(_ => EvictIdle(), null, sweepEvery, sweepEvery);
    }

    internal int Count => _slots.Count(s => s.Value.Current is not null);

    internal bool HasSession(string tenantId, Guid serverId) =>
        _slots.TryGetValue(new SessionKey(tenantId, serverId), out var slot) && slot.Current is not null;

    /// <summary>
    /// For a server that is not registered yet: connects on a one-off session, reads what the server says about
    /// itself and lists every tool (following cursors). Nothing is pooled. Streamable HTTP first; when the server
    /// refuses that with a 4xx (the way an HTTP+SSE-only server answers a POST), the legacy SSE transport is tried,
    /// and if that fails too the first, Streamable HTTP, error is the answer.
    /// </summary>
    public async Task<Result<McpServerDescription>> DescribeAsync(Uri url, McpServerAuth? auth, CancellationToken ct)
    {
        var (streamable, legacyMayWork) = await DescribeOnceAsync(url, auth, McpTransports.StreamableHttp, ct);
        if (streamable.IsSuccess || !legacyMayWork) return streamable;
        var (sse, _) = await DescribeOnceAsync(url, auth, McpTransports.Sse, ct);
        return sse.IsSuccess ? sse : streamable;
    }

    private async Task<(Result<McpServerDescription> Result, bool LegacyMayWork)> DescribeOnceAsync(
        Uri url, McpServerAuth? auth, string transport, CancellationToken ct)
    {
        var timeout = _options.RequestTimeout;
        var context = NewContext(timeout, retryable: true, ct);
        try
        {
            return (await _unregisteredPipeline.ExecuteAsync(async ctx =>
            {
                await using var client = await ConnectAsync(url, auth, transport, ctx.CancellationToken);
                return await DescribeAsync(client, transport, ctx.CancellationToken);
            }, context), false);
        }
        catch (Exception e) when (!ct.IsCancellationRequested)
        {
            return (Fail(e, url, timeout, auth?.Certificate is not null), McpFailures.SuggestsLegacySse(e));
        }
        finally
        {
            ResilienceContextPool.Shared.Return(context);
        }
    }

    /// <summary>Lists every tool of a registered server (and what it says about itself) over its pooled session.</summary>
    public Task<Result<McpServerDescription>> DescribeAsync(McpEndpoint endpoint, CancellationToken ct) =>
        RunAsync(endpoint, _options.RequestTimeout, retryable: true, (client, token) => DescribeAsync(client, endpoint.Transport, token), ct);

    /// <summary>
    /// Calls a tool over the pooled session. Not retried once sent (tools/call is not idempotent), except that a
    /// session the server had already ended is re-initialized and the call sent on the new one (the server never
    /// processed it). A result with <c>isError</c> is a success here: the caller decides what it means.
    /// </summary>
    /// <remarks><paramref name="progress"/> hears the server's progress notifications for this call (the MCP gateway relays them to its client).</remarks>
    public Task<Result<CallToolResult>> CallToolAsync(
        McpEndpoint endpoint, string toolName, IReadOnlyDictionary<string, JsonElement>? arguments, TimeSpan? timeout, CancellationToken ct,
        IProgress<ProgressNotificationValue>? progress = null) =>
        RunAsync(endpoint, timeout ?? _options.CallTimeout, retryable: false, (client, token) => progress is null
            ? client.CallToolAsync(new CallToolRequestParams
            {
                Name = toolName,
                Arguments = arguments?.ToDictionary(a => a.Key, a => a.Value),
            }, token)
            : client.CallToolAsync(toolName, arguments?.ToDictionary(a => a.Key, a => (object?)a.Value), progress, cancellationToken: token), ct);

    /// <summary>
    /// A request that only reads (resources, prompts: what the MCP gateway passes through) over the pooled session,
    /// under the request timeout and retried as reads are.
    /// </summary>
    public Task<Result<T>> ReadAsync<T>(McpEndpoint endpoint, Func<McpClient, CancellationToken, ValueTask<T>> read, CancellationToken ct) =>
        RunAsync(endpoint, _options.RequestTimeout, retryable: true, read, ct);

    /// <summary>
    /// Health: <c>ping</c> over the pooled session (<c>server/discover</c> on the sessionless revision, which has no ping);
    /// when ping is refused or the session is gone, a fresh session (initialize) is the probe. Never fails: an
    /// unusable server is reported as <c>unreachable</c> (no answer) or <c>degraded</c> (answered, but wrongly or slowly).
    /// </summary>
    public async Task<McpProbe> ProbeAsync(McpEndpoint endpoint, CancellationToken ct)
    {
        var method = "ping";
        var started = Stopwatch.GetTimestamp();
        var result = await RunAsync(endpoint, _options.RequestTimeout, retryable: true, async (client, token) =>
        {
            started = Stopwatch.GetTimestamp();
            if (client.NegotiatedProtocolVersion == SessionlessProtocol)
            {
                method = RequestMethods.ServerDiscover;
                await client.SendRequestAsync<DiscoverRequestParams, DiscoverResult>(
                    RequestMethods.ServerDiscover, new DiscoverRequestParams(), McpJsonUtilities.DefaultOptions, cancellationToken: token);
                return true;
            }
            try
            {
                method = "ping";
                await client.PingAsync(cancellationToken: token);
                return true;
            }
            catch (McpProtocolException e) when (e.ErrorCode == McpErrorCode.MethodNotFound)
            {
                return false;
            }
        }, ct);

        if (result.IsSuccess && !result.Value)
        {
            // The server does not implement ping: initializing a new session is the next best proof of life.
            method = "initialize";
            Close(endpoint.TenantId, endpoint.ServerId, forgetCircuit: false);
            started = Stopwatch.GetTimestamp();
            result = await RunAsync(endpoint, _options.RequestTimeout, retryable: true, (_, _) => ValueTask.FromResult(true), ct);
        }

        var latency = (int)Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        if (result.IsSuccess)
        {
            return latency > _options.DegradedLatency.TotalMilliseconds
                ? new McpProbe(McpProbe.Degraded, latency, method, $"Answered {method} in {latency} ms, slower than {_options.DegradedLatency.TotalMilliseconds:0} ms.")
                : new McpProbe(McpProbe.Active, latency, method, null);
        }
        var error = result.Error!;
        var status = error.Code == "upstream_error" ? McpProbe.Degraded : McpProbe.Unreachable;
        return new McpProbe(status, null, method, error.Detail, error.Code);
    }

    /// <summary>Closes the server's session (delete, credential change); with <paramref name="forgetCircuit"/> its breaker state goes too.</summary>
    public void Close(string tenantId, Guid serverId, bool forgetCircuit = true)
    {
        var key = new SessionKey(tenantId, serverId);
        if (_slots.TryRemove(key, out var slot)) slot.Retire();
        if (forgetCircuit) _serverPipelines.TryRemove(key, out _);
    }

    /// <summary>Closes sessions unused for longer than the idle timeout (also run by a timer).</summary>
    internal void EvictIdle()
    {
        var now = _time.GetTimestamp();
        foreach (var (key, slot) in _slots)
        {
            if (_time.GetElapsedTime(slot.LastUsed, now) > _options.IdleTimeout && _slots.TryRemove(new(key, slot)))
            {
                slot.Retire();
            }
        }
    }

    private async Task<Result<T>> RunAsync<T>(
        McpEndpoint endpoint, TimeSpan timeout, bool retryable, Func<McpClient, CancellationToken, ValueTask<T>> action, CancellationToken ct)
    {
        var key = new SessionKey(endpoint.TenantId, endpoint.ServerId);
        var pipeline = _serverPipelines.GetOrAdd(key, _ => BuildPipeline(withBreaker: true));
        var context = NewContext(timeout, retryable, ct);
        try
        {
            return await pipeline.ExecuteAsync(ctx => OnSessionAsync(key, endpoint, action, ctx.CancellationToken), context);
        }
        catch (Exception e) when (!ct.IsCancellationRequested)
        {
            return Fail(e, endpoint.Url, timeout, endpoint.Auth?.Certificate is not null);
        }
        finally
        {
            ResilienceContextPool.Shared.Return(context);
        }
    }

    private async ValueTask<T> OnSessionAsync<T>(
        SessionKey key, McpEndpoint endpoint, Func<McpClient, CancellationToken, ValueTask<T>> action, CancellationToken ct)
    {
        var session = await AcquireAsync(key, endpoint, ct);
        try
        {
            return await action(session.Client, ct);
        }
        catch (Exception e) when (!ct.IsCancellationRequested && session.WasEndedBy(e))
        {
            _logger.LogInformation("MCP session of server {ServerId} ended by the server; initializing a new one.", endpoint.ServerId);
            Retire(key, session);
        }
        finally
        {
            session.Release();
        }

        var fresh = await AcquireAsync(key, endpoint, ct);
        try
        {
            return await action(fresh.Client, ct);
        }
        finally
        {
            fresh.Release();
        }
    }

    private async ValueTask<PooledSession> AcquireAsync(SessionKey key, McpEndpoint endpoint, CancellationToken ct)
    {
        var fingerprint = endpoint.Fingerprint();
        while (true)
        {
            var slot = _slots.GetOrAdd(key, _ => new Slot(_time.GetTimestamp()));
            slot.LastUsed = _time.GetTimestamp();
            if (slot.Current is { } pooled && pooled.Fingerprint == fingerprint && pooled.IsAlive && pooled.TryAcquire()) return pooled;

            await slot.Gate.WaitAsync(ct);
            PooledSession session;
            try
            {
                if (slot.Current is { } stale && (stale.Fingerprint != fingerprint || !stale.IsAlive))
                {
                    slot.Current = null;
                    stale.Retire();
                }
                if (slot.Current is null)
                {
                    slot.Current = new PooledSession(await ConnectAsync(endpoint.Url, endpoint.Auth, endpoint.Transport, ct), fingerprint, _logger);
                }
                session = slot.Current;
                if (!session.TryAcquire()) continue;
                // Evicted while connecting: use it for this request, then let it close.
                if (!_slots.TryGetValue(key, out var mapped) || mapped != slot) session.Retire();
            }
            finally
            {
                slot.Gate.Release();
            }
            EnforceCapacity(key);
            return session;
        }
    }

    private void Retire(SessionKey key, PooledSession session)
    {
        if (_slots.TryGetValue(key, out var slot) && slot.Current == session) slot.Current = null;
        session.Retire();
    }

    private void EnforceCapacity(SessionKey keep)
    {
        var excess = _slots.Count - _options.MaxSessions;
        if (excess <= 0) return;
        foreach (var (key, slot) in _slots.Where(s => s.Key != keep).OrderBy(s => s.Value.LastUsed).Take(excess).ToList())
        {
            if (_slots.TryRemove(new(key, slot))) slot.Retire();
        }
    }

    private async Task<McpClient> ConnectAsync(Uri url, McpServerAuth? auth, string transportName, CancellationToken ct)
    {
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        if (auth is { HeaderName: { } name, HeaderValue: { } value }) headers[name] = value;
        // A client certificate gets a handler of its own for the session's life: a pooled connection is one identity.
        var http = auth?.Certificate is { } certificate
            ? new HttpClient(new McpResponseSizeLimit(_options.MaxResponseBytes) { InnerHandler = _guard.CreateHandler(_options.ConnectTimeout, certificate) }, disposeHandler: true)
            : new HttpClient(_handler, disposeHandler: false);
        http.Timeout = Timeout.InfiniteTimeSpan;
        var transport = new HttpClientTransport(new HttpClientTransportOptions
        {
            Endpoint = url,
            Name = $"mcp {url.Authority}",
            // Explicit, never auto-detected: the transport a server registered with is the one it is spoken to with.
            TransportMode = transportName == McpTransports.Sse ? HttpTransportMode.Sse : HttpTransportMode.StreamableHttp,
            // Legacy SSE: how long to wait for the server's endpoint event on the GET stream.
            ConnectionTimeout = _options.RequestTimeout,
            AdditionalHeaders = headers,
            // No long-lived GET stream on Streamable HTTP: a session needs no server push here.
            EnableStandaloneGetStream = false,
            MaxReconnectionAttempts = 0,
        }, http, NullLoggerFactory.Instance, ownsHttpClient: true);
        try
        {
            // The SDK logs message contents at debug level; tool arguments and results stay out of our logs.
            return await McpClient.CreateAsync(transport, new McpClientOptions
            {
                ClientInfo = new Implementation { Name = ClientName, Version = typeof(McpSessions).Assembly.GetName().Version?.ToString(3) ?? "1.0.0" },
                ProtocolVersion = _options.ProtocolVersion,
                InitializationTimeout = _options.RequestTimeout,
                DiscoverProbeTimeout = TimeSpan.FromTicks(Math.Min(TimeSpan.FromSeconds(5).Ticks, _options.RequestTimeout.Ticks / 2)),
            }, NullLoggerFactory.Instance, ct);
        }
        catch
        {
            await transport.DisposeAsync();
            throw;
        }
    }

    private async ValueTask<McpServerDescription> DescribeAsync(McpClient client, string transport, CancellationToken ct)
    {
        var tools = new List<Tool>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        var cursors = new HashSet<string>(StringComparer.Ordinal);
        string? cursor = null;
        for (var page = 1; ; page++)
        {
            var listed = await client.ListToolsAsync(new ListToolsRequestParams { Cursor = cursor }, ct);
            foreach (var tool in listed.Tools)
            {
                if (string.IsNullOrWhiteSpace(tool.Name) || tool.Name.Length > 200)
                {
                    throw new McpUpstreamException("it listed a tool without a usable name (1-200 characters).");
                }
                if (!names.Add(tool.Name)) throw new McpUpstreamException($"it listed the tool '{tool.Name}' twice.");
                tools.Add(tool);
            }
            if (tools.Count > _options.MaxTools) throw new McpUpstreamException($"it lists more than {_options.MaxTools} tools.");
            cursor = listed.NextCursor;
            if (string.IsNullOrEmpty(cursor)) break;
            if (!cursors.Add(cursor)) throw new McpUpstreamException("its tools/list cursors repeat.");
            if (page == _options.MaxToolPages) throw new McpUpstreamException($"its tools/list did not end within {_options.MaxToolPages} pages.");
        }
        return new McpServerDescription(
            transport,
            client.NegotiatedProtocolVersion ?? "unknown",
            client.ServerInfo?.Name,
            client.ServerInfo?.Version,
            JsonSerializer.Serialize(client.ServerCapabilities ?? new ServerCapabilities(), McpJsonUtilities.DefaultOptions),
            tools);
    }

    private Error Fail(Exception exception, Uri url, TimeSpan timeout, bool mutualTls)
    {
        var error = McpFailures.ToError(exception, url, timeout, mutualTls);
        _logger.LogWarning("MCP request to {Authority} failed: {Code} ({ExceptionType})", url.Authority, error.Code, exception.GetType().Name);
        return error;
    }

    private static ResilienceContext NewContext(TimeSpan timeout, bool retryable, CancellationToken ct)
    {
        var context = ResilienceContextPool.Shared.Get(ct);
        context.Properties.Set(TimeoutKey, timeout);
        context.Properties.Set(RetryableKey, retryable);
        return context;
    }

    private ResiliencePipeline BuildPipeline(bool withBreaker)
    {
        var builder = new ResiliencePipelineBuilder();
        if (_options.RetryAttempts > 0)
        {
            builder.AddRetry(new RetryStrategyOptions
            {
                MaxRetryAttempts = _options.RetryAttempts,
                Delay = _options.RetryDelay,
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                ShouldHandle = args => ValueTask.FromResult(
                    args.Outcome.Exception is { } e && args.Context.Properties.GetValue(RetryableKey, false) && McpFailures.IsTransient(e)),
            });
        }
        if (withBreaker)
        {
            builder.AddCircuitBreaker(new CircuitBreakerStrategyOptions
            {
                FailureRatio = _options.BreakerFailureRatio,
                MinimumThroughput = _options.BreakerMinimumThroughput,
                SamplingDuration = _options.BreakerSamplingDuration,
                BreakDuration = _options.BreakerBreakDuration,
                ShouldHandle = args => ValueTask.FromResult(args.Outcome.Exception is { } e && McpFailures.CountsAgainstServer(e)),
            });
        }
        builder.AddTimeout(new TimeoutStrategyOptions
        {
            TimeoutGenerator = args => ValueTask.FromResult(args.Context.Properties.GetValue(TimeoutKey, _options.RequestTimeout)),
        });
        return builder.Build();
    }

    public async ValueTask DisposeAsync()
    {
        await _idleSweep.DisposeAsync();
        foreach (var key in _slots.Keys.ToList())
        {
            if (_slots.TryRemove(key, out var slot)) slot.Retire();
        }
        _handler.Dispose();
    }

    private readonly record struct SessionKey(string TenantId, Guid ServerId);

    [System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA1001", Justification = "Gate is never waited on through its wait handle, so it holds nothing to dispose.")]
    private sealed class Slot(long created)
    {
        public readonly SemaphoreSlim Gate = new(1, 1);

        public volatile PooledSession? Current;

        public long LastUsed = created;

        public void Retire()
        {
            var session = Current;
            Current = null;
            session?.Retire();
        }
    }

    /// <summary>A client plus a lease count: retiring it closes it once the last request using it has finished.</summary>
    private sealed class PooledSession(McpClient client, string fingerprint, ILogger logger)
    {
        private int _leases;
        private int _retired;
        private int _disposed;

        public McpClient Client { get; } = client;

        public string Fingerprint { get; } = fingerprint;

        public bool IsAlive => !Client.Completion.IsCompleted && Volatile.Read(ref _retired) == 0;

        public bool TryAcquire()
        {
            Interlocked.Increment(ref _leases);
            if (Volatile.Read(ref _retired) == 0) return true;
            Release();
            return false;
        }

        public void Release()
        {
            if (Interlocked.Decrement(ref _leases) == 0 && Volatile.Read(ref _retired) == 1) Dispose();
        }

        public void Retire()
        {
            Interlocked.Exchange(ref _retired, 1);
            if (Volatile.Read(ref _leases) == 0) Dispose();
        }

        /// <summary>
        /// The server ended the session: the client is completed (it answered 404 to the session id), or a
        /// sessionful server refused the id with a JSON-RPC error that names the session.
        /// </summary>
        public bool WasEndedBy(Exception exception) =>
            Client.Completion.IsCompleted
            || (Client.SessionId is not null && exception switch
            {
                HttpRequestException { StatusCode: HttpStatusCode.NotFound } => true,
                McpProtocolException p => p.Message.Contains("session", StringComparison.OrdinalIgnoreCase),
                _ => false,
            });

        private void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 1) return;
            _ = DisposeClientAsync();
        }

        private async Task DisposeClientAsync()
        {
            try
            {
                // A sessionful server gets a DELETE; a server that hangs must not hold anything up.
                await Client.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(5));
            }
            catch (Exception e)
            {
                logger.LogDebug(e, "Closing an MCP session failed.");
            }
        }
    }
}
