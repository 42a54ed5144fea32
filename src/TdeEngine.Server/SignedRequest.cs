namespace TdeEngine.Server;

/// <summary>
/// Checks a request's signature with the access key's secret: null when it matches, else why not
/// (the message of a <c>SignatureDoesNotMatch</c>).
/// </summary>
internal delegate string? SignatureCheck(ReadOnlySpan<byte> accessKeySecret);

/// <summary>
/// What the server takes from a signed request, whichever signature it carries (RPC 1.0 in the
/// parameters, or V3 in the <c>Authorization</c> header): the common values, the action's own
/// parameters, and how to check the signature once the access key's secret is known.
/// </summary>
internal sealed class SignedRequest
{
    public required string Action { get; init; }

    public required string Version { get; init; }

    public required string AccessKeyId { get; init; }

    public string? SecurityToken { get; init; }

    /// <summary>ISO 8601 UTC (<c>yyyy-MM-ddTHH:mm:ssZ</c>), as sent: <c>Timestamp</c> or <c>x-acs-date</c>.</summary>
    public required string Timestamp { get; init; }

    /// <summary><c>SignatureNonce</c> or <c>x-acs-signature-nonce</c>.</summary>
    public required string Nonce { get; init; }

    /// <summary>The action's parameters (no common or signature parameter).</summary>
    public required Dictionary<string, string> Parameters { get; init; }

    public required SignatureCheck CheckSignature { get; init; }
}
