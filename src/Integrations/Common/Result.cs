namespace Integrations.Common;

/// <summary>Lets a pipeline behavior answer with a failure without knowing the success type.</summary>
public interface IFallible<out TSelf>
{
    static abstract TSelf Fail(Error error);

    Error? Error { get; }
}

public sealed class Result<T> : IFallible<Result<T>>
{
    private readonly T? _value;

    private Result(T? value, Error? error)
    {
        _value = value;
        Error = error;
    }

    public Error? Error { get; }

    public bool IsSuccess => Error is null;

    public T Value => IsSuccess ? _value! : throw new InvalidOperationException($"Result is a failure: {Error!.Code}.");

    public static Result<T> Ok(T value) => new(value, null);

    public static Result<T> Fail(Error error) => new(default, error);

    public static implicit operator Result<T>(T value) => Ok(value);

    public static implicit operator Result<T>(Error error) => Fail(error);
}

/// <summary>The success value of an operation that returns nothing.</summary>
public readonly record struct Done
{
    public static readonly Done Value;
}
