namespace TdeEngine.Kms.Protection;

/// <summary>Names one key version for a protection backend.</summary>
/// <param name="KeyId">The key id.</param>
/// <param name="KeyVersionId">The key version id.</param>
/// <param name="InstanceId">The KMS instance the key lives in, or null for a default key.</param>
public readonly record struct KeyVersionRef(string KeyId, string KeyVersionId, string? InstanceId);
