using System.Text.Json.Nodes;
using Integrations.Common;
using Integrations.Features.Audit;
using Integrations.Features.Datasources;
using Integrations.Features.Evidence;
using Integrations.Pipeline.Governance;
using Integrations.Tests.Support;

namespace Integrations.Tests.Datasources;

/// <summary>A datasource's evidence policy keeps each query's result (columns and rows), redacted, tied to the call by the <c>completed</c> event's output hash.</summary>
public sealed class QueryEvidenceTests(DatasourceFixture fixture) : IClassFixture<DatasourceFixture>
{
    private ServiceHost Host => fixture.Host;

    [Fact]
    public async Task A_datasources_policy_keeps_each_result_redacted_with_the_hash_its_completed_event_names()
    {
        var tenant = TestEnvironment.NewTenant();
        var datasource = await fixture.RegisterAsync(tenant);
        await fixture.DefineAsync(tenant, datasource.Id, "contacts",
            "SELECT i AS id, 'person' || i || '@example.com' AS email, 'note ' || i AS note FROM generate_series(1, 3) AS i ORDER BY i");
        var set = await Host.SendAsync(new UpdateEvidencePolicy.Command(EvidenceTarget.Datasources, datasource.Id,
            new EvidencePolicy(true, RedactPaths: ["$.rows[*][2]"])), tenant);
        Assert.True(set.IsSuccess, set.Error?.Detail);

        var run = await Host.SendAsync(new RunQuery.Command(datasource.Id, "contacts"), tenant);
        Assert.True(run.IsSuccess, run.Error?.Detail);

        var evidence = (await Host.SendAsync(new GetEvidence.Query(run.Value.InvocationId), tenant, Scopes.Admin)).Value;
        Assert.Equal(("datasource_query", $"{run.Value.QueryId}"), (evidence.SubjectType, evidence.SubjectId));
        var kept = JsonNode.Parse(evidence.Content)!;
        Assert.Equal(["id", "email", "note"], kept["columns"]!.AsArray().Select(c => (string?)c!["name"]));
        Assert.Equal([1, 2, 3], kept["rows"]!.AsArray().Select(r => (int)r![0]!));
        Assert.All(kept["rows"]!.AsArray(), r => Assert.Equal("[redacted]", (string?)r![1]));
        Assert.All(kept["rows"]!.AsArray(), r => Assert.Equal("[redacted]", (string?)r![2]));
        Assert.Equal(6, evidence.Redactions);

        var completed = (await Host.SendAsync(new ListAuditEvents.Query(Limit: 200), tenant)).Value.Items
            .Single(e => e.CorrelationId == run.Value.InvocationId.ToString() && e.Action == "datasource.query.completed");
        Assert.Equal(completed.Details.GetProperty("output_hash").GetString(), evidence.OutputHash);
        Assert.Matches("^[0-9a-f]{64}$", evidence.OutputHash);

        // A template of a datasource without a policy keeps nothing.
        var other = await fixture.RegisterAsync(tenant, name: "plain");
        await fixture.DefineAsync(tenant, other.Id, "one", "SELECT 1 AS one");
        var plain = await Host.SendAsync(new RunQuery.Command(other.Id, "one"), tenant);
        Assert.Equal("not_found", (await Host.SendAsync(new GetEvidence.Query(plain.Value.InvocationId), tenant)).Error?.Code);
    }
}
