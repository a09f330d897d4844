using System.Reflection;

namespace Integrations.Common;

/// <summary>
/// The string is one of the values a static member lists (<c>[OneOf(typeof(Integration), nameof(Integration.Statuses))]</c>).
/// The OpenAPI document turns it into the schema's <c>enum</c>, read from the member the validators check against,
/// so the list has one home. Put it on a record's parameter, a property or an endpoint's query parameter.
/// </summary>
[AttributeUsage(AttributeTargets.Parameter | AttributeTargets.Property)]
public sealed class OneOfAttribute(Type owner, string member) : Attribute
{
    private const BindingFlags Static = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static;

    public IReadOnlyList<string> Values =>
        (owner.GetField(member, Static)?.GetValue(null) ?? owner.GetProperty(member, Static)?.GetValue(null)) is IEnumerable<string> values
            ? [.. values]
            : throw new InvalidOperationException($"{owner.Name}.{member} is not a static list of strings.");
}
