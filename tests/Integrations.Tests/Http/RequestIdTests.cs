using System.Net;
using System.Text.Json;
using Integrations.Tests.Support;

namespace Integrations.Tests.Http;

public sealed class RequestIdTests(ApiFixture fixture) : IClassFixture<ApiFixture>
{
    [Fact]
    public async Task Every_answer_carries_the_callers_request_id_or_a_new_one_and_problems_name_it()
    {
        var client = await fixture.Factory.ClientForAsync(TestEnvironment.NewTenant());
        var mine = new HttpRequestMessage(HttpMethod.Get, "/integrations");
        mine.Headers.Add("X-Request-Id", "req-42");
        Assert.Equal("req-42", (await client.SendAsync(mine)).Headers.GetValues("X-Request-Id").Single());

        var generated = await client.GetAsync("/integrations");
        Assert.Matches("^[0-9a-f]{32}$", generated.Headers.GetValues("X-Request-Id").Single());

        var bad = new HttpRequestMessage(HttpMethod.Get, $"/integrations/{Guid.NewGuid()}");
        bad.Headers.Add("X-Request-Id", "req-43");
        var problem = await client.SendAsync(bad);
        Assert.Equal(HttpStatusCode.NotFound, problem.StatusCode);
        Assert.Equal("req-43", JsonDocument.Parse(await problem.Content.ReadAsStringAsync()).RootElement.GetProperty("request_id").GetString());

        var root = await fixture.Factory.CreateClient(new Microsoft.AspNetCore.Mvc.Testing.WebApplicationFactoryClientOptions { AllowAutoRedirect = false }).GetAsync("/");
        Assert.Equal((HttpStatusCode.Redirect, "/docs"), (root.StatusCode, root.Headers.Location?.ToString()));
    }
}
