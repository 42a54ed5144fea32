namespace TdeEngine.Kms.Identity;

/// <summary>The kind of identity that makes a call, named as ActionTrail's <c>userIdentity.type</c>.</summary>
public enum PrincipalType
{
    /// <summary>The account's root identity.</summary>
    Root,
    /// <summary>A RAM user with its own access keys.</summary>
    RamUser,
    /// <summary>A RAM role assumed by a user or a cloud service.</summary>
    AssumedRole,
    /// <summary>A cloud product acting for the account (for example RDS using <c>alias/acs/rds</c>).</summary>
    Service,
}
