using MediatR;

namespace Integrations.Common;

/// <summary>
/// Every request names its operation (traces, metrics and audit speak it) and the scope a caller needs.
/// </summary>
public interface IOperation
{
    static abstract string Operation { get; }

    static abstract string Scope { get; }
}

/// <summary>A tenant operation that answers with a <see cref="Result{T}"/>.</summary>
public interface IOperation<TResponse> : IRequest<Result<TResponse>>, IOperation;

/// <summary>The request changes state: its audit events commit in the same transaction as the change.</summary>
public interface IAudited;

public static class Scopes
{
    public const string Read = "integrations:read";
    public const string Write = "integrations:write";
    public const string Invoke = "tools:invoke";
    public const string Admin = "admin";

    /// <summary>Attaching a stored secret to something that sends it out (integration, MCP server, datasource, grant).</summary>
    public const string CredentialsUse = "credentials:use";

    /// <summary>Calling the tenant's LLM integrations through the gateway at <c>/v1</c> (OpenAI-compatible).</summary>
    public const string LlmInvoke = "llm:invoke";

    public static readonly IReadOnlyList<string> All = [Read, Write, Invoke, CredentialsUse, Admin, LlmInvoke];
}
