using Integrations.Common;
using Integrations.Features.Incidents;
using MediatR;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Playwright;
using Npgsql;

namespace Integrations.Tests.Support;

/// <summary>
/// The service on a real port (Kestrel) and Debian's Chromium driven by Playwright, for the console's journeys. The
/// browser is the distribution's (<c>/usr/bin/chromium</c>, installed by <c>./build.sh test</c>): a browser download is
/// not possible here. Playwright gives each launch a fresh profile directory of its own.
/// </summary>
public sealed class ConsoleBrowser : IAsyncLifetime
{
    public const string ChromiumPath = "/usr/bin/chromium";

    private IPlaywright? _playwright;

    public ApiFactory Api { get; private set; } = null!;

    public Uri Address { get; private set; } = null!;

    public IBrowser Browser { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        if (!File.Exists(ChromiumPath))
        {
            throw new InvalidOperationException($"{ChromiumPath} is missing: ./build.sh test installs Debian's chromium package (apt-get install chromium).");
        }
        Api = await ApiFactory.StartAsync();
        Api.UseKestrel(0);
        Api.StartServer();
        Address = new Uri(Api.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
        // Assertions poll for 5 s by default; a CI machine running the whole suite on two cores needs longer.
        Assertions.SetDefaultExpectTimeout(20_000);
        _playwright = await Playwright.CreateAsync();
        Browser = await _playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = ChromiumPath,
            Headless = true,
            // Without the background-networking flags Chromium keeps dialling out, and this machine's network refuses it.
            Args =
            [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
            ],
        });
    }

    public async Task DisposeAsync()
    {
        if (Browser is not null) await Browser.DisposeAsync();
        _playwright?.Dispose();
        if (Api is not null) await Api.DisposeAsync();
    }

    /// <summary>A page in a browser context of its own (its own cookies), addressing the service relatively.</summary>
    public async Task<IPage> NewPageAsync()
    {
        var context = await Browser.NewContextAsync(new BrowserNewContextOptions
        {
            BaseURL = Address.ToString().TrimEnd('/'),
            ViewportSize = new ViewportSize { Width = 1280, Height = 800 },
        });
        return await context.NewPageAsync();
    }

    /// <summary>Signs in through the sign-in form, as a person would.</summary>
    public static async Task SignInAsync(IPage page, string key)
    {
        await page.GotoAsync("/console/sign-in");
        await page.GetByLabel("API key").FillAsync(key);
        await page.GetByRole(AriaRole.Button, new() { Name = "Sign in" }).ClickAsync();
        // Polls the address and the overview's heading instead of waiting for the page's load event: on a loaded
        // machine Playwright saw the redirect reach /console and then never saw its load event (30 s timeouts with
        // "NetworkIdle event fired"), with WaitForURL's commit option too.
        await Assertions.Expect(page).ToHaveURLAsync(new System.Text.RegularExpressions.Regex("/console$"), new() { Timeout = 30_000 });
        await Assertions.Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Overview", Level = 1 })).ToBeVisibleAsync(new() { Timeout = 30_000 });
    }

    public async Task<Result<T>> SendAsync<T>(IRequest<Result<T>> request, string tenantId, params string[] scopes)
    {
        await using var scope = Api.Services.CreateAsyncScope();
        scope.ServiceProvider.GetRequiredService<CallerContext>().Set(TestEnvironment.CallerFor(tenantId, scopes));
        return await scope.ServiceProvider.GetRequiredService<IMediator>().Send(request);
    }

    /// <summary>Opens an incident the way a failing governed call does (the recorder on the tenant's connection).</summary>
    public async Task<RecordedIncident> OpenIncidentAsync(string tenantId, string message)
    {
        await using var connection = await Api.Services.GetRequiredService<NpgsqlDataSource>().OpenConnectionAsync();
        await using (var pin = new NpgsqlCommand("SELECT set_config('role', 'integrations_app', false), set_config('app.tenant_id', $1, false)", connection))
        {
            pin.Parameters.Add(new NpgsqlParameter { Value = tenantId });
            await pin.ExecuteNonQueryAsync();
        }
        return await Api.Services.GetRequiredService<IncidentRecorder>().OpenOrBumpAsync(connection, tenantId,
            new IncidentReport("tool_failure", "high", "mcp_tool", "everything/get-env", Guid.NewGuid().ToString("N"), message), CancellationToken.None);
    }

    /// <summary>
    /// Saves a screenshot of the page: into docs/console/NAME.png, where the README shows it, when
    /// INTEGRATIONS_UPDATE_SCREENSHOTS=1 (so a plain test run leaves the checkout as it was); otherwise into the
    /// temporary folder integrations-tests/console-screenshots.
    /// </summary>
    public static async Task ScreenshotAsync(IPage page, string name)
    {
        var folder = Environment.GetEnvironmentVariable("INTEGRATIONS_UPDATE_SCREENSHOTS") == "1"
            ? Path.Combine(TestEnvironment.RepositoryRoot(), "docs", "console")
            : Path.Combine(Path.GetTempPath(), "integrations-tests", "console-screenshots");
        Directory.CreateDirectory(folder);
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = Path.Combine(folder, name + ".png"), FullPage = true });
    }
}
