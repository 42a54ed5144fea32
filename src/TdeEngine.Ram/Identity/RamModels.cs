using TdeEngine.Kms.Secrets;

namespace TdeEngine.Ram.Identity;

public sealed record RamUser(string UserId, string UserName, string DisplayName, DateTimeOffset CreateDate);

public sealed record RamRole(string RoleId, string RoleName, string Arn, string Description, string AssumeRolePolicyDocument, DateTimeOffset CreateDate);

public sealed record RamPolicy(string PolicyName, string PolicyType, string Description, string PolicyDocument, DateTimeOffset CreateDate, int AttachmentCount);

/// <summary>A new access key. The secret is shown once; dispose to wipe it.</summary>
public sealed class NewAccessKey(string accessKeyId, SecretBuffer secret, DateTimeOffset createDate) : IDisposable
{
    public string AccessKeyId { get; } = accessKeyId;

    /// <summary>The AccessKeySecret as ASCII bytes.</summary>
    public SecretBuffer Secret { get; } = secret;

    public DateTimeOffset CreateDate { get; } = createDate;

    public void Dispose() => Secret.Dispose();
}
