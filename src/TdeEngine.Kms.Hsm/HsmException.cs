using TdeEngine.Kms.Errors;

namespace TdeEngine.Kms.Hsm;

/// <summary>A PKCS#11 failure: the function that failed, its CKR_* value, and what to do.</summary>
public sealed class HsmException(string function, string returnValue, string message, Exception? inner = null)
    : Exception($"{function} failed with {returnValue}: {message}", inner)
{
    /// <summary>The PKCS#11 function, for example <c>C_Encrypt</c>.</summary>
    public string Function { get; } = function;

    /// <summary>The CKR_* return value.</summary>
    public string ReturnValue { get; } = returnValue;

    /// <summary>As a KMS error (HTTP 503 for an unavailable token, 500 otherwise).</summary>
    public KmsException ToKmsException() => new(
        ReturnValue is "CKR_TOKEN_NOT_PRESENT" or "CKR_DEVICE_REMOVED" or "CKR_PIN_LOCKED" or "CKR_DEVICE_ERROR" ? "Rejected.HsmUnavailable" : "InternalFailure",
        ReturnValue is "CKR_TOKEN_NOT_PRESENT" or "CKR_DEVICE_REMOVED" or "CKR_PIN_LOCKED" or "CKR_DEVICE_ERROR" ? 503 : 500,
        Message, this);

    internal static string Advice(string returnValue) => returnValue switch
    {
        "CKR_TOKEN_NOT_PRESENT" or "CKR_DEVICE_REMOVED" => "The HSM token is not present. Insert or connect it (or check the module's configuration, e.g. SOFTHSM2_CONF) and retry.",
        "CKR_PIN_LOCKED" => "The user PIN is locked after too many wrong attempts. The security officer must unlock it (C_InitPIN) before the KMS can log in.",
        "CKR_PIN_INCORRECT" => "The HSM rejected the PIN. Check TDE_HSM_PIN or the PIN file; repeated failures lock the PIN.",
        "CKR_KEY_HANDLE_INVALID" or "CKR_OBJECT_HANDLE_INVALID" => "The key object is gone from the token. Restore the token from its backup.",
        "CKR_ENCRYPTED_DATA_INVALID" or "CKR_GENERAL_ERROR" => "The ciphertext did not authenticate inside the HSM.",
        _ => "See the HSM's documentation for this return value.",
    };
}
