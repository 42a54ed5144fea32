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

/// <summary>
/// Temporary credentials from STS AssumeRole: an <c>STS.</c> access key, its secret and a security
/// token, valid until <see cref="Expiration"/>. The secret and the token are shown once; dispose to wipe them.
/// </summary>
public sealed class TemporaryCredentials(string accessKeyId, SecretBuffer secret, SecretBuffer securityToken, DateTimeOffset expiration,
    string assumedRoleId, string arn) : IDisposable
{
    public string AccessKeyId { get; } = accessKeyId;

    /// <summary>The AccessKeySecret as ASCII bytes.</summary>
    public SecretBuffer Secret { get; } = secret;

    /// <summary>The SecurityToken as ASCII bytes; every request signed with this key must carry it.</summary>
    public SecretBuffer SecurityToken { get; } = securityToken;

    public DateTimeOffset Expiration { get; } = expiration;

    /// <summary><c>ROLEID:SESSION</c>.</summary>
    public string AssumedRoleId { get; } = assumedRoleId;

    /// <summary><c>acs:ram::ACCOUNT:role/ROLE/SESSION</c>.</summary>
    public string Arn { get; } = arn;

    public void Dispose()
    {
        Secret.Dispose();
        SecurityToken.Dispose();
    }
}
