namespace TdeEngine.Kms.Errors;

/// <summary>
/// Factory for every error the KMS core raises, so codes, statuses and message wording live in one
/// place. Codes follow the Alibaba Cloud KMS OpenAPI 2016-01-20 where it defines one.
/// </summary>
public static class KmsErrors
{
    /// <summary>Error codes. They are part of the public contract and never change.</summary>
    public static class Codes
    {
        public const string KeyNotFound = "Forbidden.KeyNotFound";
        public const string KeyVersionNotFound = "Forbidden.KeyVersionNotFound";
        public const string AliasNotFound = "Forbidden.AliasNotFound";
        public const string InstanceNotFound = "Forbidden.DKMSInstanceNotFound";
        public const string ResourceNotFound = "Forbidden.ResourceNotFound";
        public const string Disabled = "Rejected.Disabled";
        public const string PendingDeletion = "Rejected.PendingDeletion";
        public const string PendingImport = "Rejected.PendingImport";
        public const string StateModifiedFailed = "Rejected.StateModifiedFailed";
        public const string ServiceKeyReadOnly = "Forbidden.ServiceKey";
        public const string DeletionProtected = "Forbidden.DeletionProtection";
        public const string AliasExists = "AliasAlreadyExists";
        public const string KeyQuotaExceeded = "Rejected.LimitExceeded";
        public const string Throttling = "Rejected.Throttling";
        public const string UnsupportedProtectionLevel = "Unsupported.ProtectionLevel";
        public const string UnsupportedOrigin = "Unsupported.Origin";
        public const string InvalidCiphertext = "InvalidCiphertext";
        public const string InvalidParameter = "InvalidParameter";
        public const string MissingParameter = "MissingParameter";
        public const string UnsupportedOperation = "UnsupportedOperation";
        public const string InvalidAction = "InvalidAction.NotFound";
        public const string InternalFailure = "InternalFailure";
        public const string InvalidImportToken = "InvalidImportToken";
        public const string ExpiredImportToken = "ExpiredImportToken";
        public const string InvalidKeyMaterial = "InvalidKeyMaterial";
    }

    public static KmsException KeyNotFound(string keyId) => new(Codes.KeyNotFound, 404,
        $"The key '{keyId}' was not found in this account and region. Check the key id, ARN or alias with ListKeys or ListAliases.");

    public static KmsException KeyVersionNotFound(string keyId, string versionId) => new(Codes.KeyVersionNotFound, 404,
        $"The key version '{versionId}' of key '{keyId}' was not found. List the versions with ListKeyVersions.");

    public static KmsException AliasNotFound(string alias) => new(Codes.AliasNotFound, 404,
        $"The alias '{alias}' was not found. Create it with CreateAlias, or list aliases with ListAliases.");

    public static KmsException InstanceNotFound(string instanceId) => new(Codes.InstanceNotFound, 403,
        $"The KMS instance '{instanceId}' was not found. Create one with CreateKmsInstance.");

    public static KmsException ResourceNotFound(string resource) => new(Codes.ResourceNotFound, 404,
        $"The resource '{resource}' was not found. Pass the key ARN as returned by DescribeKey.");

    public static KmsException Disabled(string keyId) => new(Codes.Disabled, 409,
        $"The key '{keyId}' is disabled and refuses cryptographic operations. Enable it with EnableKey if its use is intended.");

    public static KmsException PendingDeletion(string keyId) => new(Codes.PendingDeletion, 409,
        $"The key '{keyId}' is pending deletion and refuses this operation. Call CancelKeyDeletion to keep the key.");

    public static KmsException PendingImport(string keyId) => new(Codes.PendingImport, 409,
        $"The key '{keyId}' has no key material yet (or its imported material expired). Import material with GetParametersForImport and ImportKeyMaterial.");

    public static KmsException StateModifiedFailed(string keyId, string state, string action) => new(Codes.StateModifiedFailed, 409,
        $"The key '{keyId}' is in state {state}, in which {action} is not allowed. Check the key state with DescribeKey.");

    public static KmsException ServiceKeyReadOnly(string keyId, string action) => new(Codes.ServiceKeyReadOnly, 403,
        $"The key '{keyId}' is a service key managed by a cloud product; {action} is not allowed on it. Create a customer master key (CreateKey) if you need control over the key.");

    public static KmsException DeletionProtected(string keyId) => new(Codes.DeletionProtected, 403,
        $"The key '{keyId}' has deletion protection. Turn it off with SetDeletionProtection --EnableDeletionProtection false first.");

    public static KmsException AliasExists(string alias) => new(Codes.AliasExists, 400,
        $"The alias '{alias}' already exists. Use UpdateAlias to point it at another key, or choose another name.");

    public static KmsException ReservedAlias(string alias) => InvalidParameter("AliasName",
        $"the alias '{alias}' uses the prefix 'alias/acs/', which is reserved for service keys. Choose another name.");

    public static KmsException KeyQuotaExceeded(string instanceId, int keyNum) => new(Codes.KeyQuotaExceeded, 400,
        $"The KMS instance '{instanceId}' already holds its quota of {keyNum} keys. Delete keys or create an instance with a larger --KeyNum.");

    public static KmsException Throttling(string instanceId, int qps) => new(Codes.Throttling, 429,
        $"The KMS instance '{instanceId}' is limited to {qps} cryptographic calls per second. Retry with back-off, or use an instance with a larger --Spec.");

    public static KmsException HsmNotConfigured() => new(Codes.UnsupportedProtectionLevel, 400,
        "Hardware-protected keys need an HSM backend, and none is configured. Configure a PKCS#11 module (see docs/hsm.md), or use ProtectionLevel SOFTWARE.");

    public static KmsException InvalidCiphertext(string? keyId = null) => new(Codes.InvalidCiphertext, 400,
        keyId is null
            ? "The ciphertext blob is not a valid TdeEngine KMS ciphertext. Pass the CiphertextBlob exactly as Encrypt or GenerateDataKey returned it."
            : $"The ciphertext blob could not be decrypted under key '{keyId}': it was altered, or the EncryptionContext differs from the one used to encrypt it.");

    public static KmsException InvalidParameter(string parameter, string reason) => new(Codes.InvalidParameter, 400,
        $"The parameter '{parameter}' is not valid: {reason}");

    public static KmsException MissingParameter(string parameter) => new(Codes.MissingParameter, 400,
        $"The input parameter '{parameter}' that is mandatory for processing this request is not supplied.");

    public static KmsException UnsupportedOrigin(string keyId, string action) => new(Codes.UnsupportedOrigin, 400,
        $"{action} is not valid for the origin of key '{keyId}'. Only keys created with --Origin EXTERNAL take imported material.");

    public static KmsException InvalidImportToken(string keyId) => new(Codes.InvalidImportToken, 400,
        $"The ImportToken is not one GetParametersForImport issued for key '{keyId}', or it expired and was removed (tokens last 24 hours). Call GetParametersForImport and wrap the material with its public key.");

    public static KmsException ExpiredImportToken() => new(Codes.ExpiredImportToken, 400,
        "The ImportToken has expired (tokens last 24 hours). Call GetParametersForImport again and wrap the material with the new public key.");

    public static KmsException InvalidKeyMaterial(string reason) => new(Codes.InvalidKeyMaterial, 400,
        $"The key material is not valid: {reason}");

    public static KmsException UnsupportedOperation(string what) => new(Codes.UnsupportedOperation, 400,
        $"This operation is not supported: {what}");

    /// <summary>An unknown action; <paramref name="group"/> names the CLI group that lists the actions (kms, ram).</summary>
    public static KmsException InvalidAction(string action, string group = "kms") => new(Codes.InvalidAction, 404,
        $"The action '{action}' does not exist. Run 'tde {group} --help' for the list of actions.");
}
