namespace TdeEngine.Kms.Api;

/// <summary>
/// The HTTP status and UTF-8 JSON body of one OpenAPI call. The body may hold a Base64 data key:
/// write it where it must go, then dispose the response to wipe it.
/// </summary>
public sealed class KmsApiResponse : IDisposable
{
    private readonly SecretBufferWriter _body;

    internal KmsApiResponse(int httpStatus, SecretBufferWriter body, string requestId, string? errorCode, string? errorMessage)
    {
        HttpStatus = httpStatus;
        _body = body;
        RequestId = requestId;
        ErrorCode = errorCode;
        ErrorMessage = errorMessage;
    }

    /// <summary>200 on success, else the Alibaba HTTP status of the error.</summary>
    public int HttpStatus { get; }

    /// <summary>The request id echoed in the body.</summary>
    public string RequestId { get; }

    /// <summary>The error code, or null on success.</summary>
    public string? ErrorCode { get; }

    /// <summary>The error message, or null on success.</summary>
    public string? ErrorMessage { get; }

    /// <summary>True for a 2xx status.</summary>
    public bool IsSuccess => ErrorCode is null;

    /// <summary>The JSON body. Valid until disposed.</summary>
    public ReadOnlySpan<byte> Body => _body.WrittenSpan;

    /// <summary>Wipes the body.</summary>
    public void Dispose() => _body.Dispose();
}
