using TdeEngine.Kms.Secrets;

namespace TdeEngine.Kms.KeyManagement;

/// <summary>Key states, as the OpenAPI spells them.</summary>
public static class KeyStates
{
    public const string Enabled = "Enabled";
    public const string Disabled = "Disabled";
    public const string PendingDeletion = "PendingDeletion";
    public const string PendingImport = "PendingImport";
}

/// <summary>Parameters of CreateKey. Null means the Alibaba default.</summary>
public sealed record CreateKeyRequest
{
    public string? Description { get; init; }
    public string? KeySpec { get; init; }
    public string? KeyUsage { get; init; }
    public string? Origin { get; init; }
    public string? ProtectionLevel { get; init; }
    public bool EnableAutomaticRotation { get; init; }
    public TimeSpan? RotationInterval { get; init; }
    public string? DKMSInstanceId { get; init; }
    public IReadOnlyList<KeyValuePair<string, string>> Tags { get; init; } = [];
}

/// <summary>A page of a list, with the paging fields the OpenAPI returns.</summary>
public sealed record Page<T>(IReadOnlyList<T> Items, int TotalCount, int PageNumber, int PageSize);

/// <summary>An entry of ListKeys.</summary>
public sealed record KeyListEntry(string KeyId, string KeyArn);

/// <summary>A key version.</summary>
public sealed record KeyVersionInfo(string KeyId, string KeyVersionId, DateTimeOffset CreationDate);

/// <summary>An alias.</summary>
public sealed record AliasInfo(string AliasName, string AliasArn, string KeyId);

/// <summary>A tag.</summary>
public sealed record TagInfo(string KeyId, string TagKey, string TagValue);

/// <summary>A KMS instance.</summary>
public sealed record KmsInstanceInfo(string KmsInstanceId, string KmsInstanceArn, string ProductType, int KeyNum, int Spec, DateTimeOffset CreationDate);

/// <summary>The result of Encrypt, GenerateDataKeyWithoutPlaintext and ReEncrypt.</summary>
public sealed record CiphertextResult(string KeyId, string KeyVersionId, byte[] CiphertextBlob);

/// <summary>
/// Plaintext handed out by Decrypt or GenerateDataKey. The bytes live in a <see cref="SecretBuffer"/>
/// that the caller owns: dispose the result to wipe them.
/// </summary>
public sealed class PlaintextResult : IDisposable
{
    internal PlaintextResult(string keyId, string keyVersionId, SecretBuffer plaintext, byte[]? ciphertextBlob)
    {
        KeyId = keyId;
        KeyVersionId = keyVersionId;
        Plaintext = plaintext;
        CiphertextBlob = ciphertextBlob;
    }

    /// <summary>The key that protects the plaintext.</summary>
    public string KeyId { get; }

    /// <summary>The key version that protects the plaintext.</summary>
    public string KeyVersionId { get; }

    /// <summary>The plaintext (a data key, or data passed to Encrypt). Wiped on dispose.</summary>
    public SecretBuffer Plaintext { get; }

    /// <summary>For GenerateDataKey: the data key sealed under the KMS key. Null for Decrypt.</summary>
    public byte[]? CiphertextBlob { get; }

    /// <summary>Wipes the plaintext.</summary>
    public void Dispose() => Plaintext.Dispose();
}

/// <summary>The result of GetParametersForImport: an RSA public key to wrap material with, and the token that names its private key.</summary>
public sealed record ImportParameters(string KeyId, string ImportToken, byte[] PublicKey, DateTimeOffset TokenExpireTime);
