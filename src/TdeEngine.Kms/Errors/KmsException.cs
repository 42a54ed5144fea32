namespace TdeEngine.Kms.Errors;

/// <summary>
/// The one exception type the KMS throws for a refused or failed call. It carries an Alibaba KMS
/// error code (stable, machine-readable), the HTTP status the OpenAPI would answer with, and a
/// message that tells the caller what to do next.
/// </summary>
/// <remarks>
/// Messages never contain key material or plaintext. Failures to authenticate a ciphertext say
/// which key was involved but never which check failed.
/// </remarks>
public sealed class KmsException : Exception
{
    /// <summary>Creates an error with a code, HTTP status and an actionable message.</summary>
    public KmsException(string code, int httpStatus, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        ArgumentException.ThrowIfNullOrEmpty(code);
        Code = code;
        HttpStatus = httpStatus;
    }

    /// <summary>The Alibaba KMS error code, for example <c>Forbidden.KeyNotFound</c>.</summary>
    public string Code { get; }

    /// <summary>The HTTP status the KMS OpenAPI returns with this error.</summary>
    public int HttpStatus { get; }
}
