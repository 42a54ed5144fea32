namespace TdeEngine.Kms.KeyManagement;

/// <summary>A key as DescribeKey shows it (Alibaba <c>KeyMetadata</c>).</summary>
public sealed record KeyMetadata
{
    public required string KeyId { get; init; }
    public required string Arn { get; init; }
    public required string Description { get; init; }
    public required string KeySpec { get; init; }
    /// <summary><c>ENCRYPT/DECRYPT</c>, or <c>Service Key</c> for keys that cloud products own.</summary>
    public required string KeyUsage { get; init; }
    public required string Origin { get; init; }
    public required string ProtectionLevel { get; init; }
    public required string Creator { get; init; }
    public required DateTimeOffset CreationDate { get; init; }
    public required string KeyState { get; init; }
    public string? PrimaryKeyVersion { get; init; }
    public required bool DeletionProtection { get; init; }
    public string? DeletionProtectionDescription { get; init; }
    public DateTimeOffset? DeleteDate { get; init; }
    /// <summary><c>Enabled</c> or <c>Disabled</c>.</summary>
    public required string AutomaticRotation { get; init; }
    public TimeSpan? RotationInterval { get; init; }
    public DateTimeOffset? LastRotationDate { get; init; }
    public DateTimeOffset? NextRotationDate { get; init; }
    public string? DKMSInstanceId { get; init; }
    public DateTimeOffset? MaterialExpireTime { get; init; }
    /// <summary>True for a service key (<c>alias/acs/&lt;product&gt;</c>), which users cannot change.</summary>
    public required bool IsServiceKey { get; init; }
}
