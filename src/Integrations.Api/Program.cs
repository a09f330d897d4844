using System.Text.Json;
using System.Text.Json.Serialization;
using Carter;
using Integrations;
using Integrations.Api;
using Integrations.Api.AdminConsole;
using Integrations.Infrastructure.Http;
using Integrations.Infrastructure.Logging;
using Integrations.Infrastructure.Security;
using Integrations.Infrastructure.Telemetry;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Http.Json;

if (args.Length > 0 && HostCommands.IsCommand(args[0]))
{
    return await HostCommands.RunAsync(args);
}

var builder = WebApplication.CreateBuilder(args);
// One JSON object per line: UTC timestamp, level, and the scopes — trace and span id (the host's activity tracking),
// and request id, operation and tenant (RequestLog). The host's own request lines and scope name the raw path and
// query; RequestLog's line replaces them.
builder.Logging.ClearProviders().AddFilter("Microsoft.AspNetCore.Hosting.Diagnostics", LogLevel.None);
builder.Logging.Services.AddSingleton<ILoggerProvider>(services =>
    new BatchedJsonConsole(services.GetService<ConsoleLogOutput>()?.Stream ?? Console.OpenStandardOutput()));

builder.Services.AddIntegrations(builder.Configuration);
// The modules are the Integrations assembly's; validators are registered by AddIntegrations, not by Carter.
builder.Services.AddCarter(new DependencyContextAssemblyCatalog([typeof(IntegrationsServiceCollection).Assembly]), c => c.WithEmptyValidators());
builder.Services.AddIntegrationsTelemetry(builder.Configuration);
builder.Services.Configure<JsonOptions>(o =>
{
    o.SerializerOptions.PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower;
    o.SerializerOptions.DictionaryKeyPolicy = null;
    // Numbers are numbers: the web default also reads "5" as 5, and the OpenAPI generator then types every integer
    // as integer|string, which a generated client takes at its word.
    o.SerializerOptions.NumberHandling = JsonNumberHandling.Strict;
});
builder.Services.Configure<RouteHandlerOptions>(o => o.ThrowOnBadRequest = true);
builder.Services.AddProblemDetails();
builder.Services.AddExceptionHandler<UnexpectedExceptionHandler>();
builder.Services.AddAuthentication(ApiKeyAuthenticationHandler.SchemeName)
    .AddScheme<Microsoft.AspNetCore.Authentication.AuthenticationSchemeOptions, ApiKeyAuthenticationHandler>(ApiKeyAuthenticationHandler.SchemeName, null);
builder.Services.AddAuthorization();
builder.Services.AddIntegrationsOpenApi();
var corsOrigins = CorsOrigins.FromConfiguration(builder.Configuration);
if (corsOrigins.Length > 0)
{
    builder.Services.AddCors(o => o.AddDefaultPolicy(p => p.WithOrigins(corsOrigins).AllowAnyHeader().AllowAnyMethod()
        .WithExposedHeaders(CorsOrigins.ExposedHeaders).SetPreflightMaxAge(TimeSpan.FromMinutes(10))));
}
builder.Services.AddConsole();
builder.Services.AddHealthChecks().AddCheck<DatabaseHealthCheck>("database", tags: ["ready"]);
builder.WebHost.ConfigureKestrel(o =>
{
    o.Limits.MaxRequestBodySize = RequestBodyLimit.MaxBytes;
    o.Limits.MaxRequestLineSize = RequestHeadLimit.MaxTargetBytes * RequestHeadLimit.KestrelFactor;
    o.Limits.MaxRequestHeadersTotalSize = RequestHeadLimit.MaxHeaderBytes * RequestHeadLimit.KestrelFactor;
});

var app = builder.Build();

app.Use(RequestIds.Apply);
app.UseMiddleware<RequestLog>();
app.UseIntegrationsMetrics(app.Configuration);
app.Use(RateLimitHeaders.Apply);
app.UseExceptionHandler();
app.UseStatusCodePages(async context =>
{
    var status = context.HttpContext.Response.StatusCode;
    var error = status switch
    {
        404 => Integrations.Common.Error.NotFound("resource"),
        405 => new Integrations.Common.Error("method_not_allowed", 405, "Method not allowed.", "This route does not accept that method."),
        415 => new Integrations.Common.Error("unsupported_media_type", 415, "Unsupported media type.", "Send the body as application/json."),
        400 => new Integrations.Common.Error("malformed_request", 400, "Malformed request.", "The request could not be read."),
        413 => new Integrations.Common.Error("payload_too_large", 413, "Request body too large.", $"The body may be at most {RequestBodyLimit.MaxBytes} bytes."),
        414 => new Integrations.Common.Error("uri_too_long", 414, "URI too long.", "The request target is longer than the server accepts."),
        431 => new Integrations.Common.Error("headers_too_large", 431, "Request headers too large.", "The request's headers are larger than the server accepts."),
        _ => new Integrations.Common.Error("http_" + status, status, "Request failed."),
    };
    await Problems.WriteAsync(context.HttpContext, error);
});
app.Use(RequestHeadLimit.Enforce);
app.Use(RequestBodyLimit.Enforce);
app.Use(RequestText.Enforce);
app.UseMiddleware<RebindingGuard>();
if (corsOrigins.Length > 0) app.UseCors();
app.UseAuthentication();
app.UseAuthorization();
app.Use(IdempotencyKeys.Apply);

app.MapOpenApi("/openapi/{documentName}.json");
app.UseSwaggerUI(o =>
{
    o.RoutePrefix = "docs";
    o.SwaggerEndpoint("/openapi/v1.json", "Integrations v1");
});
app.MapGet("/", () => Results.Redirect("/docs")).ExcludeFromDescription();
app.MapHealthChecks("/health/live", new HealthCheckOptions { Predicate = _ => false }).ExcludeFromDescription();
app.MapHealthChecks("/health/ready", new HealthCheckOptions { Predicate = c => c.Tags.Contains("ready") }).ExcludeFromDescription();
app.MapCarter();
app.MapConsole();

await app.RunAsync();
return 0;

public partial class Program;
