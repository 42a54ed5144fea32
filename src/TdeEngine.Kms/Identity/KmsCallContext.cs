namespace TdeEngine.Kms.Identity;

/// <summary>
/// Everything about a call that is not a parameter of the action: who calls, from where, and the
/// request id that ties the response, the logs and the audit event together. Every KMS operation
/// takes one, so that access control and audit can wrap every call in one place.
/// </summary>
public sealed record KmsCallContext(KmsPrincipal Principal, string SourceIp, string RequestId, string? UserAgent = null)
{
    /// <summary>A context for an in-process caller acting as the account root.</summary>
    public static KmsCallContext ForRoot(string accountId, string sourceIp = "127.0.0.1", string? userAgent = null) =>
        new(KmsPrincipal.Root(accountId), sourceIp, NewRequestId(), userAgent);

    /// <summary>A new request id in the upper-case GUID form the Alibaba APIs use.</summary>
    public static string NewRequestId() => Uuid.NewV4(upperCase: true);

    /// <summary>The account the call acts in.</summary>
    public string AccountId => Principal.AccountId;

    /// <summary>
    /// Whether the call came over a secure channel: the server sets it from the request (HTTPS or
    /// not); in-process calls never cross a network and default to true. RAM policies see it as
    /// <c>acs:SecureTransport</c>.
    /// </summary>
    public bool SecureTransport { get; init; } = true;

    /// <summary>
    /// The request's <c>SignatureNonce</c> (server calls only). Not a secret: it is recorded with the
    /// call's audit event, from which a restarted server learns the nonces it must still refuse.
    /// </summary>
    public string? SignatureNonce { get; init; }
}
