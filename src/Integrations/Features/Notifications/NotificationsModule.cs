using Carter;
using Integrations.Infrastructure.Http;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Features.Notifications;

/// <summary>The incident notifications area: routing rules under <c>/notifications</c>, the delivery log, and the notifier (a background job).</summary>
public sealed class NotificationsModule : ICarterModule
{
    public void AddRoutes(IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/notifications").RequireAuthorization()
            .WithTag("Notifications", "Incident routing: new and escalated incidents delivered to webhook and Slack connections, once per state change, attempts visible.");
        GetNotifications.Map(group);
        UpdateNotifications.Map(group);
        ListNotificationDeliveries.Map(group);
    }

    public static void AddServices(IServiceCollection services)
    {
        services.AddSingleton<IncidentNotifier>();
        services.AddHostedService(sp => sp.GetRequiredService<IncidentNotifier>());
    }
}
