namespace TdeEngine.Kms.Store;

/// <summary>One key as stored. Immutable: a change is a new record written in a transaction.</summary>
internal sealed record KeyRecord
{
    public required string KeyId { get; init; }
    public required string AccountId { get; init; }
    public required string RegionId { get; init; }
    public string Description { get; init; } = "";
    public required string KeySpec { get; init; }
    public required string KeyUsage { get; init; }
    public required string Origin { get; init; }
    public required string ProtectionLevel { get; init; }
    public required string Creator { get; init; }
    public required DateTimeOffset CreationDate { get; init; }
    public required string KeyState { get; init; }
    public string? PrimaryKeyVersion { get; init; }
    public bool DeletionProtection { get; init; }
    public string? DeletionProtectionDescription { get; init; }
    public DateTimeOffset? DeleteDate { get; init; }
    public bool AutomaticRotation { get; init; }
    public long? RotationIntervalSeconds { get; init; }
    public DateTimeOffset? LastRotationDate { get; init; }
    public DateTimeOffset? NextRotationDate { get; init; }
    public string? DkmsInstanceId { get; init; }

    /// <summary>The product code of a service key (<c>alias/acs/&lt;product&gt;</c>), else null.</summary>
    public string? ServiceProduct { get; init; }
    public DateTimeOffset? MaterialExpireTime { get; init; }

    /// <summary>For EXTERNAL keys: SHA-256 over a domain tag, the key id and the imported material, so only the same material can be imported again.</summary>
    public string? MaterialFingerprint { get; init; }

    public bool IsServiceKey => ServiceProduct is not null;
}

/// <summary>One key version: its id and the bytes its protection backend persists for it.</summary>
internal sealed record KeyVersionRecord(string KeyId, string KeyVersionId, DateTimeOffset CreationDate, byte[] Material);

/// <summary>An alias in an account and region.</summary>
internal sealed record AliasRecord(string AccountId, string RegionId, string AliasName, string KeyId);

/// <summary>A tag on a key.</summary>
internal sealed record TagRecord(string KeyId, string TagKey, string TagValue);

/// <summary>A KMS instance: a key quota and a QPS budget, of the software or hardware type.</summary>
internal sealed record KmsInstanceRecord(string InstanceId, string AccountId, string RegionId, string ProductType, int KeyNum, int Spec,
    DateTimeOffset CreationDate);

/// <summary>An import token of GetParametersForImport: the RSA private key (wrapped by the root key) that unwraps material for one key.</summary>
internal sealed record ImportTokenRecord(string Token, string KeyId, string WrappingAlgorithm, string WrappingKeySpec, DateTimeOffset ExpireTime, byte[] WrappedPrivateKey);
