namespace TdeEngine.Kms.Identity;

/// <summary>Who makes a call: the account and the identity inside it.</summary>
/// <param name="Type">The kind of identity.</param>
/// <param name="AccountId">The Alibaba-style account id (UID) that owns the keys the call may touch.</param>
/// <param name="PrincipalId">A stable id of the identity inside the account.</param>
/// <param name="UserName">A display name (user name, role session, or product code).</param>
public sealed record KmsPrincipal(PrincipalType Type, string AccountId, string PrincipalId, string UserName)
{
    /// <summary>The root identity of an account.</summary>
    public static KmsPrincipal Root(string accountId) => new(PrincipalType.Root, accountId, accountId, "root");

    /// <summary>
    /// For a role session: the policy document given to AssumeRole, which narrows what the role's own
    /// policies allow (a call needs both); null when the session has none.
    /// </summary>
    public string? SessionPolicy { get; init; }
}
