using Integrations.Pipeline.Governance;

namespace Integrations.Tests.Governance;

public sealed class ArgumentValidatorTests
{
    private const string SumSchema = """
        {"$schema":"http://json-schema.org/draft-07/schema#","type":"object",
         "properties":{"a":{"type":"number"},"b":{"type":"number"}},"required":["a","b"],"additionalProperties":false}
        """;

    private readonly ArgumentValidator _validator = new();

    [Fact]
    public async Task Valid_arguments_pass()
    {
        Assert.Empty(await _validator.ValidateAsync("h1", SumSchema, """{"a": 1, "b": 2.5}"""));
    }

    [Fact]
    public async Task Missing_wrong_typed_and_unknown_arguments_are_named()
    {
        var errors = await _validator.ValidateAsync("h1", SumSchema, """{"a": "one", "c": 3}""");

        Assert.Contains("arguments.a", errors.Keys);
        Assert.Contains(errors.Values.SelectMany(m => m), m => m.Contains("'b' is required"));
        Assert.Contains(errors.Values.SelectMany(m => m), m => m.Contains("'c' is not a parameter"));
    }

    [Fact]
    public async Task A_schema_that_cannot_be_parsed_refuses_instead_of_allowing()
    {
        var errors = await _validator.ValidateAsync("bad", "{not json", """{"a": 1}""");
        Assert.Equal(["arguments"], errors.Keys);
    }
}
