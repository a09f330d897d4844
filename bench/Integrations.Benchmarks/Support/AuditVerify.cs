using System.Diagnostics;
using System.Text.Json;

namespace Integrations.Benchmarks.Support;

/// <summary><c>POST /audit/verify</c> on the API host for the tenant of <paramref name="http"/>'s key: the integrity check that ends every governed-call stage.</summary>
public static class AuditVerify
{
    public sealed record Result(bool Valid, long EventsChecked, TimeSpan Took);

    public static async Task<Result> RunAsync(HttpClient http)
    {
        var watch = Stopwatch.StartNew();
        using var response = await http.PostAsync("/audit/verify", null);
        var body = await response.Content.ReadAsStringAsync();
        watch.Stop();
        if (!response.IsSuccessStatusCode) throw new InvalidOperationException($"POST /audit/verify answered {(int)response.StatusCode}: {body}");
        using var verified = JsonDocument.Parse(body);
        return new Result(verified.RootElement.GetProperty("valid").GetBoolean(), verified.RootElement.GetProperty("events_checked").GetInt64(), watch.Elapsed);
    }
}
