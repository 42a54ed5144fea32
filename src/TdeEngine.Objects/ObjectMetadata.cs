namespace TdeEngine.Objects;

/// <summary>What HeadObject and ListObjects return for an object. Read from the header: no KMS call.</summary>
/// <param name="Key">The object name.</param>
/// <param name="Size">The plaintext size in bytes (OSS <c>Content-Length</c>).</param>
/// <param name="ServerSideEncryption"><c>KMS</c> or <c>AES256</c> (OSS <c>x-oss-server-side-encryption</c>).</param>
/// <param name="KmsKeyId">The ARN of the key that wraps the object's data key: the CMK for <c>KMS</c>, the OSS service key for <c>AES256</c>.</param>
/// <param name="LastModified">When the object file was last written (UTC).</param>
/// <param name="ETag">32 upper-case hex digits that change with every PutObject: the object id, not the MD5 of the content (see docs/objects.md).</param>
public sealed record ObjectMetadata(string Key, long Size, string ServerSideEncryption, string? KmsKeyId, DateTimeOffset LastModified, string ETag);
