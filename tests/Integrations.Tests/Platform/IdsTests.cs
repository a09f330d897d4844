using Integrations.Common;

namespace Integrations.Tests.Platform;

public sealed class IdsTests
{
    [Fact]
    public void Ids_made_in_a_burst_are_strictly_increasing_uuid_v7()
    {
        var ids = Enumerable.Range(0, 10_000).Select(_ => Ids.New()).ToList();

        Assert.Equal(ids, ids.Order().ToList());
        Assert.Equal(ids.Count, ids.Distinct().Count());
        Assert.All(ids, id => Assert.Equal(7, id.Version));
    }
}
