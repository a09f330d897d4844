using System.Collections.Concurrent;
using System.Text.Json;
using Integrations.Common;
using Integrations.Features.Audit;
using Integrations.Features.Credentials;
using Integrations.Features.Incidents;
using Integrations.Features.Policies;
using Integrations.Infrastructure.Vault;
using Integrations.Pipeline.Governance;
using Integrations.Tests.Support;
using MediatR;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using NSubstitute;
using NSubstitute.ExceptionExtensions;

namespace Integrations.Tests.Governance;

/// <summary>
/// The governed-call stage with a kind of call of the tests' own (<see cref="FakeCall"/>): every step is the stage's,
/// so each is proved here once for every kind. The side effect is a substitute; the events, records, incidents,
/// policy, rate limits and vault are real.
/// </summary>
public sealed class GovernedCallStageTests : IAsyncLifetime
{
    private ServiceHost _host = null!;
    private readonly FakeCall.ISideEffect _effect = Substitute.For<FakeCall.ISideEffect>();
    private readonly FakeCall.Targets _targets = new();

    public async Task InitializeAsync()
    {
        _host = await ServiceHost.StartAsync(configure: services =>
        {
            services.AddSingleton(_effect);
            services.AddSingleton(_targets);
            services.AddGovernedCallKind<FakeCall.Command, FakeCall.Kind>();
            services.AddTransient<IRequestHandler<FakeCall.Command, Result<FakeCall.Response>>, FakeCall.Handler>();
        });
        await OwnerSql.ExecuteAsync(_host.ConnectionString, """
            DO $$ BEGIN
                IF to_regclass('fake_call_records') IS NULL THEN
                    CREATE TABLE fake_call_records (id uuid PRIMARY KEY, tenant_id text NOT NULL, outcome text NOT NULL, reason text,
                        error text, incident_id uuid, finished_at timestamptz NOT NULL, duration_ms double precision NOT NULL);
                    PERFORM enable_tenant_isolation('fake_call_records', 'SELECT, INSERT');
                END IF;
            END $$;
            """);
        _effect.RunAsync(default!, default, default).ReturnsForAnyArgs(Result<string>.Ok("done"));
    }

    public async Task DisposeAsync() => await _host.DisposeAsync();

    private Task<Result<FakeCall.Response>> CallAsync(string tenant, string target, string input = "ok") =>
        _host.SendAsync(new FakeCall.Command(target, input), tenant);

    private async Task<List<ListAuditEvents.Event>> CallEventsAsync(string tenant) =>
        (await _host.SendAsync(new ListAuditEvents.Query(Limit: 200), tenant)).Value.Items
            .Where(e => e.Action.StartsWith("fake.call.", StringComparison.Ordinal)).Reverse().ToList();

    private Task<List<(string Outcome, string? Reason, Guid? IncidentId)>> RecordsAsync(string tenant) =>
        OwnerSql.QueryAsync<(string, string?, Guid?)>(_host.ConnectionString,
            "SELECT outcome, reason, incident_id FROM fake_call_records WHERE tenant_id = @tenant", new { tenant });

    private static Guid InvocationOf<T>(Result<T> result) => (Guid)result.Error!.Extensions!["invocation_id"]!;

    [Fact]
    public async Task An_allowed_call_is_requested_allowed_started_completed_under_one_correlation_with_its_record()
    {
        var tenant = TestEnvironment.NewTenant();
        _targets.Add(tenant, new FakeCall.Target { Name = "t1" });

        var result = await CallAsync(tenant, "t1");

        Assert.True(result.IsSuccess, result.Error?.Detail);
        Assert.Equal("done", result.Value.Answer);
        await _effect.Received(1).RunAsync("t1", null, Arg.Any<CancellationToken>());
        var events = await CallEventsAsync(tenant);
        Assert.Equal(["fake.call.requested", "fake.call.allowed", "fake.call.started", "fake.call.completed"], events.Select(e => e.Action));
        Assert.All(events, e => Assert.Equal(result.Value.InvocationId.ToString(), e.CorrelationId));
        Assert.All(events, e => Assert.Equal(result.Value.InvocationId.ToString(), e.Details.GetProperty("invocation_id").GetString()));
        Assert.All(events, e => Assert.Equal("t1", e.Details.GetProperty("target").GetString()));
        Assert.Equal("low", events[1].Details.GetProperty("risk_level").GetString());
        Assert.Equal(("completed", 4), (events[3].Details.GetProperty("outcome").GetString(), events[3].Details.GetProperty("answer_length").GetInt32()));
        Assert.Equal(result.Value.DurationMs, events[3].Details.GetProperty("duration_ms").GetDouble());
        Assert.Equal([("completed", (string?)null, (Guid?)null)], await RecordsAsync(tenant));
        Assert.True((await _host.SendAsync(new VerifyAuditChain.Query(), tenant)).Value.Valid);
    }

    [Fact]
    public async Task A_target_that_does_not_exist_is_404_with_requested_and_denied_and_no_side_effect()
    {
        var tenant = TestEnvironment.NewTenant();

        var result = await CallAsync(tenant, "missing");

        Assert.Equal(("not_found", 404), (result.Error?.Code, result.Error?.Status));
        Assert.Equal(["fake.call.requested", "fake.call.denied"], (await CallEventsAsync(tenant)).Select(e => e.Action));
        Assert.Equal("missing", (await CallEventsAsync(tenant))[1].SubjectId);
        await _effect.DidNotReceiveWithAnyArgs().RunAsync(default!, default, default);
    }

    public static TheoryData<string, string, int, string> Refusals() => new()
    {
        // target, input, status, rule
        { "disabled", "ok", 403, "target_disabled" },
        { "critical", "ok", 403, "risk_ceiling" },
        { "denied-by-name", "ok", 403, "deny_list" },
        { "t1", "bad", 400, "input_schema" },
    };

    [Theory]
    [MemberData(nameof(Refusals))]
    public async Task Each_rule_refuses_before_the_side_effect_with_its_rule_in_the_answer_the_event_and_the_record(
        string target, string input, int status, string rule)
    {
        var tenant = TestEnvironment.NewTenant();
        _targets.Add(tenant, new FakeCall.Target { Name = "t1" });
        _targets.Add(tenant, new FakeCall.Target { Name = "disabled", Enabled = false });
        _targets.Add(tenant, new FakeCall.Target { Name = "critical", RiskLevel = "critical" });
        _targets.Add(tenant, new FakeCall.Target { Name = "denied-by-name" });
        Assert.True((await _host.SendAsync(new UpdateToolPolicy.Command(DenyList: ["fakes/denied-by-name"]), tenant)).IsSuccess);

        var result = await CallAsync(tenant, target, input);

        Assert.Equal((status, rule), (result.Error?.Status, result.Error?.Extensions?["rule"]));
        var events = await CallEventsAsync(tenant);
        Assert.Equal(["fake.call.requested", "fake.call.denied"], events.Select(e => e.Action));
        Assert.Equal(rule, events[1].Details.GetProperty("rule").GetString());
        Assert.Equal(InvocationOf(result).ToString(), events[1].CorrelationId);
        Assert.Equal([("denied", rule, (Guid?)null)], await RecordsAsync(tenant));
        await _effect.DidNotReceiveWithAnyArgs().RunAsync(default!, default, default);
    }

    [Fact]
    public async Task The_targets_limit_and_the_tenants_limit_are_counted_and_the_refusal_says_when_to_retry()
    {
        var tenant = TestEnvironment.NewTenant();
        _targets.Add(tenant, new FakeCall.Target { Name = "limited", RateLimitPerMinute = 2 });
        _targets.Add(tenant, new FakeCall.Target { Name = "free" });
        while (DateTime.UtcNow.Second > 50) await Task.Delay(500); // one minute window for the whole test

        Assert.True((await CallAsync(tenant, "limited")).IsSuccess);
        Assert.True((await CallAsync(tenant, "limited")).IsSuccess);
        var limited = await CallAsync(tenant, "limited");
        Assert.Equal((429, "fake_rate_limit"), (limited.Error?.Status, limited.Error?.Extensions?["rule"]));
        Assert.InRange((int)limited.Error!.Extensions!["retry_after_seconds"]!, 1, 60);

        Assert.True((await _host.SendAsync(new UpdateToolPolicy.Command(TenantRateLimitPerMinute: 1), tenant)).IsSuccess);
        Assert.True((await CallAsync(tenant, "free")).IsSuccess);
        var tenantLimited = await CallAsync(tenant, "free");
        Assert.Equal((429, RateLimiter.TenantRule), (tenantLimited.Error?.Status, tenantLimited.Error?.Extensions?["rule"]));
        await _effect.ReceivedWithAnyArgs(3).RunAsync(default!, default, default);
    }

    [Fact]
    public async Task The_targets_credential_comes_from_the_vault_for_the_handler_and_an_ungranted_one_stops_the_call_before_started()
    {
        var tenant = TestEnvironment.NewTenant();
        var encrypted = (await _host.SendAsync(new EncryptCredential.Command("s3cr3t-value"), tenant)).Value.Reference;
        var stored = (await _host.SendAsync(new StoreCredential.Command("never-granted", CredentialTypes.ApiKey, "other-secret"), tenant)).Value;
        _targets.Add(tenant, new FakeCall.Target { Name = "with-secret", CredentialRef = encrypted });
        _targets.Add(tenant, new FakeCall.Target { Name = "ungranted", CredentialRef = stored.Reference });

        Assert.True((await CallAsync(tenant, "with-secret")).IsSuccess);
        await _effect.Received(1).RunAsync("with-secret", "s3cr3t-value", Arg.Any<CancellationToken>());

        var refused = await CallAsync(tenant, "ungranted");
        Assert.Equal(("credential_denied", 403), (refused.Error?.Code, refused.Error?.Status));
        var mine = (await CallEventsAsync(tenant)).Where(e => e.CorrelationId == InvocationOf(refused).ToString()).ToList();
        Assert.Equal(["fake.call.requested", "fake.call.allowed", "fake.call.failed"], mine.Select(e => e.Action));
        Assert.Equal(GovernedCallStage.CredentialUnavailable, mine[2].Details.GetProperty("cause").GetString());
        Assert.Contains(("failed", GovernedCallStage.CredentialUnavailable, (Guid?)null), await RecordsAsync(tenant));
        await _effect.DidNotReceive().RunAsync("ungranted", Arg.Any<string?>(), Arg.Any<CancellationToken>());
        Assert.DoesNotContain("s3cr3t-value", string.Join(' ', (await CallEventsAsync(tenant)).Select(e => e.Details.GetRawText())));
    }

    [Theory]
    [InlineData("upstream_error", "failed", "high")]
    [InlineData("upstream_timeout", "timeout", "medium")]
    public async Task A_failed_side_effect_is_recorded_with_the_incident_it_opens(string code, string outcome, string severity)
    {
        var tenant = TestEnvironment.NewTenant();
        _targets.Add(tenant, new FakeCall.Target { Name = "flaky" });
        _effect.RunAsync("flaky", Arg.Any<string?>(), Arg.Any<CancellationToken>())
            .Returns(Result<string>.Fail(new Error(code, code == "upstream_timeout" ? 504 : 502, "Upstream.", "the upstream broke")));

        var result = await CallAsync(tenant, "flaky");

        Assert.Equal(code, result.Error?.Code);
        var failed = (await CallEventsAsync(tenant))[^1];
        Assert.Equal(("fake.call.failed", outcome, code), (failed.Action, failed.Details.GetProperty("outcome").GetString(), failed.Details.GetProperty("code").GetString()));
        var incident = Assert.Single((await _host.SendAsync(new ListIncidents.Query(), tenant)).Value.Items);
        Assert.Equal(severity, incident.Severity);
        Assert.Equal(incident.Id.ToString(), failed.Details.GetProperty("incident_id").GetString());
        Assert.Equal([(outcome, (string?)null, (Guid?)incident.Id)], await RecordsAsync(tenant));
    }

    [Fact]
    public async Task A_side_effect_that_throws_or_is_cancelled_still_closes_the_call()
    {
        var tenant = TestEnvironment.NewTenant();
        _targets.Add(tenant, new FakeCall.Target { Name = "throws" });
        _targets.Add(tenant, new FakeCall.Target { Name = "cancelled" });
        _effect.RunAsync("throws", Arg.Any<string?>(), Arg.Any<CancellationToken>()).ThrowsAsync(new InvalidOperationException("bug"));
        using var cancel = new CancellationTokenSource();
        _effect.RunAsync("cancelled", Arg.Any<string?>(), Arg.Any<CancellationToken>()).Returns(async call =>
        {
            await cancel.CancelAsync();
            call.Arg<CancellationToken>().ThrowIfCancellationRequested();
            return Result<string>.Ok("unreachable");
        });

        await Assert.ThrowsAsync<InvalidOperationException>(() => CallAsync(tenant, "throws"));
        await using (var scope = _host.Services.CreateAsyncScope())
        {
            scope.ServiceProvider.GetRequiredService<CallerContext>().Set(TestEnvironment.CallerFor(tenant));
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
                scope.ServiceProvider.GetRequiredService<IMediator>().Send(new FakeCall.Command("cancelled", "ok"), cancel.Token));
        }

        var failed = (await CallEventsAsync(tenant)).Where(e => e.Action == "fake.call.failed").Select(e => e.Details.GetProperty("cause").GetString());
        Assert.Equal(["exception", "cancelled"], failed);
        Assert.Equal(2, (await RecordsAsync(tenant)).Count(r => r.Outcome == "failed" && r.IncidentId is null));
    }

    [Fact]
    public async Task When_the_audit_trail_cannot_be_written_the_call_is_not_made_and_the_answer_is_503()
    {
        var unreachable = new NpgsqlConnectionStringBuilder(_host.ConnectionString) { Port = 1, Timeout = 2 }.ConnectionString;
        await using var host = await ServiceHost.StartAsync(connectionString: unreachable, configure: services =>
        {
            services.AddSingleton(_effect);
            services.AddSingleton(_targets);
            services.AddGovernedCallKind<FakeCall.Command, FakeCall.Kind>();
            services.AddTransient<IRequestHandler<FakeCall.Command, Result<FakeCall.Response>>, FakeCall.Handler>();
        });
        var tenant = TestEnvironment.NewTenant();
        _targets.Add(tenant, new FakeCall.Target { Name = "t1" });

        var result = await host.SendAsync(new FakeCall.Command("t1", "ok"), tenant);

        Assert.Equal(("unavailable", 503), (result.Error?.Code, result.Error?.Status));
        await _effect.DidNotReceiveWithAnyArgs().RunAsync(default!, default, default);
    }
}

/// <summary>A kind of governed call made only of what a newcomer writes: a request, its target lookup, its rules, its handler.</summary>
public static class FakeCall
{
    public sealed record Command(string Target, string Input) : IOperation<Response>, IGovernedCall
    {
        public static string Operation => "fake.call";
        public static string Scope => Scopes.Invoke;
    }

    public sealed record Response(Guid InvocationId, string Answer, double DurationMs);

    public interface ISideEffect
    {
        Task<Result<string>> RunAsync(string target, string? secret, CancellationToken ct);
    }

    public sealed class Target : IGovernedTarget
    {
        public Guid Id { get; } = Guid.NewGuid();
        public required string Name { get; init; }
        public bool Enabled { get; init; } = true;
        public string RiskLevel { get; init; } = "low";
        public int? RateLimitPerMinute { get; init; }
        public string? CredentialRef { get; init; }
        public string SubjectId => Name;
        public CredentialAccessor CredentialAccessor => new(CredentialAccessor.McpServer, Id);
    }

    /// <summary>The targets, per tenant, held in memory: the stage does not care where a kind reads them from.</summary>
    public sealed class Targets
    {
        private readonly ConcurrentDictionary<(string, string), Target> _targets = new();

        public void Add(string tenant, Target target) => _targets[(tenant, target.Name)] = target;

        public Target? Find(string tenant, string name) => _targets.GetValueOrDefault((tenant, name));
    }

    public sealed class Kind(Targets targets) : GovernedCallKind<Command, Target, Response>
    {
        public override string EventPrefix => "fake.call";
        public override string SubjectType => "fake_target";
        public override string TargetName => "fake target";

        public override string SubjectOf(Command request) => request.Target;

        public override Task<Target?> FindAsync(NpgsqlConnection connection, string tenantId, Command request, CancellationToken ct) =>
            Task.FromResult(targets.Find(tenantId, request.Target));

        public override CallDenial? CheckState(Target target) =>
            target.Enabled ? null : CallDenial.Policy("target_disabled", "The fake target is disabled.");

        public override PolicySubject PolicySubjectOf(Target target) => new("fakes", Guid.Empty, target.Name, target.RiskLevel);

        public override ValueTask<CallDenial?> CheckInputAsync(Command request, Target target) =>
            ValueTask.FromResult(request.Input == "ok" ? null : new CallDenial("input_schema", Error.Validation("input", "Must be 'ok'.")));

        public override TargetRateLimit? RateLimitOf(Target target, ToolPolicy policy) =>
            target.RateLimitPerMinute is { } limit ? new TargetRateLimit($"fake:{target.Id}", limit, "fake_rate_limit", "Too many fake calls.") : null;

        public override void AddFacts(Command request, Target? target, IDictionary<string, object?> facts) => facts["target"] = request.Target;

        public override void AddRecord(NpgsqlBatch batch, CallRecord<Command, Target> record)
        {
            var insert = new NpgsqlBatchCommand(
                "INSERT INTO fake_call_records (id, tenant_id, outcome, reason, error, incident_id, finished_at, duration_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)");
            insert.Parameters.Add(new NpgsqlParameter { Value = record.Call.Id });
            insert.Parameters.Add(new NpgsqlParameter { Value = record.Call.Caller.TenantId });
            insert.Parameters.Add(new NpgsqlParameter { Value = record.Outcome });
            insert.Parameters.Add(new NpgsqlParameter { Value = (object?)record.Reason ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text });
            insert.Parameters.Add(new NpgsqlParameter { Value = (object?)record.Error ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text });
            insert.Parameters.Add(new NpgsqlParameter { Value = (object?)record.IncidentId ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Uuid });
            insert.Parameters.Add(new NpgsqlParameter { Value = DateTime.UtcNow });
            insert.Parameters.Add(new NpgsqlParameter { Value = record.DurationMs });
            batch.BatchCommands.Add(insert);
        }

        public override IncidentReport? IncidentFor(CallRecord<Command, Target> record) => new(
            "tool_failure", record.Outcome == CallOutcomes.Timeout ? "medium" : "high", "fake_target", record.Target.Name,
            $"fake_failure:{record.Target.Name}", $"{record.Target.Name}: {record.Error}");
    }

    public sealed class Handler(GovernedCallContext calls, ISideEffect effect) : IRequestHandler<Command, Result<Response>>
    {
        public async Task<Result<Response>> Handle(Command request, CancellationToken ct)
        {
            var call = calls.Current;
            var answer = await effect.RunAsync(call.TargetAs<Target>().Name, call.Credential?.Value, ct);
            if (!answer.IsSuccess) return answer.Error!;
            call.Report(new CallOutput(Facts: new Dictionary<string, object?> { ["answer_length"] = answer.Value.Length }));
            return new Response(call.Id, answer.Value, call.Duration);
        }
    }
}
