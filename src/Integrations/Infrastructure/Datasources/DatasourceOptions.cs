using Microsoft.Extensions.Configuration;

namespace Integrations.Infrastructure.Datasources;

/// <summary>Settings of the SQL gateway, bound from <c>Integrations:Datasources</c>.</summary>
public sealed class DatasourceOptions
{
    public const string Section = "Integrations:Datasources";

    /// <summary>
    /// Largest result of one datasources.query, as the JSON its rows become (estimated by <see cref="SqlGateway.JsonBytes"/>);
    /// the rows that fit are returned with <c>truncated_reason: byte_limit</c>.
    /// </summary>
    public long MaxResultBytes { get; set; } = 4 * 1024 * 1024;

    public static DatasourceOptions FromConfiguration(IConfiguration configuration)
    {
        var options = configuration.GetSection(Section).Get<DatasourceOptions>() ?? new DatasourceOptions();
        if (options.MaxResultBytes < 1024)
        {
            throw new InvalidOperationException($"{Section}: MaxResultBytes must be at least 1024.");
        }
        return options;
    }
}
