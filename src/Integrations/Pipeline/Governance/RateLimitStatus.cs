namespace Integrations.Pipeline.Governance;

/// <summary>
/// The per-minute limit that is closest to refusing the current scope's governed call, as its admission counted it: the
/// limit that refused it, else the counted one with the fewest calls left. Only calls whose limits were counted have one
/// (a call without a limit counts nothing), so it costs no query of its own; HTTP answers it as the
/// <c>RateLimit-Limit</c>, <c>RateLimit-Remaining</c> and <c>RateLimit-Reset</c> headers.
/// </summary>
public sealed class RateLimitStatus
{
    public RateLimitDecision? Closest { get; private set; }

    internal void Counted(RateLimitDecision decision)
    {
        if (Closest is { Allowed: false }) return;
        if (!decision.Allowed || Closest is not { } closest || decision.Remaining < closest.Remaining) Closest = decision;
    }
}
