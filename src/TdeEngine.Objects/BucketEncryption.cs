namespace TdeEngine.Objects;

/// <summary>A bucket's default server-side encryption (OSS <c>ServerSideEncryptionRule</c>).</summary>
/// <param name="SseAlgorithm"><c>AES256</c> (the OSS-managed key <c>alias/acs/oss</c>) or <c>KMS</c>.</param>
/// <param name="KmsMasterKeyId">For <c>KMS</c>: the CMK (id, ARN or alias); null means <c>alias/acs/oss</c>. Always null for <c>AES256</c>.</param>
public sealed record BucketEncryption(string SseAlgorithm, string? KmsMasterKeyId);
