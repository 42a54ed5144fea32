using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Dapper;
using TdeEngine.Kms.Errors;
using TdeEngine.Kms.Identity;
using TdeEngine.Kms.RootKeys;
using TdeEngine.Kms.Secrets;
using TdeEngine.Ram.Identity;
using TdeEngine.Ram.Policies;

namespace TdeEngine.Ram;

/// <summary>
/// RAM for one KMS home: users, roles, access keys, custom and system policies, attachments, and
/// the decision for every call. The account root may do everything; RAM users and roles may do
/// what their attached policies allow.
/// </summary>
/// <remarks>Thread-safe and safe across processes (SQLite). Access-key secrets are stored only wrapped by the root key.</remarks>
public sealed class RamService : IDisposable
{
    private const string SecretAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    private static readonly IReadOnlyDictionary<string, (string Description, string Document)> SystemPolicies = new Dictionary<string, (string, string)>
    {
        ["AliyunKMSFullAccess"] = ("Full access to KMS.", """{"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}"""),
        ["AliyunKMSReadOnlyAccess"] = ("Read-only access to KMS metadata.",
            """{"Version":"1","Statement":[{"Effect":"Allow","Action":["kms:Describe*","kms:List*","kms:Get*"],"Resource":"*"}]}"""),
        ["AliyunKMSCryptoUserAccess"] = ("Use keys for cryptographic operations.",
            """{"Version":"1","Statement":[{"Effect":"Allow","Action":["kms:Encrypt","kms:Decrypt","kms:ReEncrypt","kms:GenerateDataKey","kms:GenerateDataKeyWithoutPlaintext","kms:DescribeKey","kms:ListKeys","kms:ListAliases"],"Resource":"*"}]}"""),
    };

    private readonly RamStore _store;
    private readonly IRootKeyProvider _root;
    private readonly IDisposable? _ownedRoot;
    private readonly TimeProvider _time;

    // Hot-path caches: every server request looks up its access key and, for RAM users, its policies.
    // Changes made in this process apply at once; changes made by another process within CacheTtl.
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, CachedCredential> _keys = new(StringComparer.Ordinal);

    // Advanced after every access-key deletion is written; a cached key loaded under an older
    // generation is read again, so a lookup that overlapped the deletion cannot keep the key alive.
    private long _keyGeneration;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, (IReadOnlyList<AttachedPolicy> Policies, long At, long Generation)> _policies = new(StringComparer.Ordinal);

    // Advanced after every attach and detach is written. A cached policy list loaded under an older
    // generation is not used: a call running while a policy was detached may have loaded (and
    // cached) the attachments from before, which would otherwise apply for another CacheTtl.
    private long _policyGeneration;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, AttachedPolicy> _sessionPolicies = new(StringComparer.Ordinal);
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, CachedCredential> _temporary = new(StringComparer.Ordinal);

    /// <summary>How long another process's RAM changes may take to be seen here. Default 2 seconds.</summary>
    public TimeSpan CacheTtl { get; set; } = TimeSpan.FromSeconds(2);

    private RamService(RamStore store, IRootKeyProvider root, IDisposable? ownedRoot, TimeProvider time)
    {
        _store = store;
        _root = root;
        _ownedRoot = ownedRoot;
        _time = time;
    }

    /// <summary>Opens RAM under <paramref name="home"/> (<c>ram.db</c>, and <c>root.key</c> unless given).</summary>
    public static RamService Open(string home, IRootKeyProvider? rootKey = null, TimeProvider? time = null)
    {
        Directory.CreateDirectory(home);
        FileRootKeyProvider? owned = null;
        if (rootKey is null)
        {
            owned = FileRootKeyProvider.OpenOrCreate(Path.Combine(home, "root.key"));
            rootKey = owned;
        }

        return new RamService(new RamStore(Path.Combine(home, "ram.db")), rootKey, owned, time ?? TimeProvider.System);
    }

    // ---------------------------------------------------------------- users and roles

    /// <summary>CreateUser. User names are unique in the account without regard to case.</summary>
    public RamUser CreateUser(KmsCallContext context, string userName, string? displayName = null)
    {
        CheckName(userName, "UserName", 64);
        using (var c = _store.Open())
        {
            // The unique index refuses these too; a store that predates it (and holds such pairs already) has only this check.
            if (FindUser(c, context.AccountId, userName) is { } existing)
            {
                throw UserExists(userName, existing.UserName);
            }
        }

        var user = new RamUser(RandomDigits(16), userName, displayName ?? userName, Now());
        _store.Insert("INSERT INTO Users (UserId, AccountId, UserName, DisplayName, CreateDate) VALUES (@UserId, @AccountId, @UserName, @DisplayName, @CreateDate)",
            new { user.UserId, context.AccountId, user.UserName, user.DisplayName, CreateDate = user.CreateDate.ToUnixTimeMilliseconds() },
            () => UserExists(userName, userName));
        return user;
    }

    /// <summary>CreateRole. Role names are unique in the account without regard to case (the role ARN is lower case).</summary>
    public RamRole CreateRole(KmsCallContext context, string roleName, string? assumeRolePolicyDocument = null, string? description = null)
    {
        CheckName(roleName, "RoleName", 64);
        using (var c = _store.Open())
        {
            if (FindRole(c, context.AccountId, roleName) is { } existing)
            {
                throw RoleExists(roleName, existing.RoleName);
            }
        }

        if (!string.IsNullOrEmpty(assumeRolePolicyDocument))
        {
            TrustPolicy.Parse(assumeRolePolicyDocument);
        }

        var role = new RamRole(RandomDigits(16), roleName, RoleArn(context.AccountId, roleName), description ?? "",
            assumeRolePolicyDocument ?? "", Now());
        _store.Insert("INSERT INTO Roles (RoleId, AccountId, RoleName, Description, AssumeRolePolicyDocument, CreateDate) " +
                      "VALUES (@RoleId, @AccountId, @RoleName, @Description, @AssumeRolePolicyDocument, @CreateDate)",
            new { role.RoleId, context.AccountId, role.RoleName, role.Description, role.AssumeRolePolicyDocument, CreateDate = role.CreateDate.ToUnixTimeMilliseconds() },
            () => RoleExists(roleName, roleName));
        return role;
    }

    /// <summary>
    /// RAM UpdateRole: replaces a role's trust policy and/or description (each only when given). The
    /// new trust policy is checked as at CreateRole; sessions already issued keep running until they expire.
    /// </summary>
    public RamRole UpdateRole(KmsCallContext context, string roleName, string? newAssumeRolePolicyDocument = null, string? newDescription = null)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (newAssumeRolePolicyDocument is not null)
        {
            TrustPolicy.Parse(newAssumeRolePolicyDocument);
        }

        using var c = _store.Open();
        var roleId = (FindRole(c, context.AccountId, roleName) ?? throw RoleNotFound(roleName)).RoleId;
        c.Execute(
            "UPDATE Roles SET AssumeRolePolicyDocument = coalesce(@newAssumeRolePolicyDocument, AssumeRolePolicyDocument), " +
            "Description = coalesce(@newDescription, Description) WHERE RoleId = @roleId",
            new { newAssumeRolePolicyDocument, newDescription, roleId });
        var row = c.QuerySingle<(string RoleId, string RoleName, string Description, string AssumeRolePolicyDocument, long CreateDate)>(
            "SELECT RoleId, RoleName, Description, AssumeRolePolicyDocument, CreateDate FROM Roles WHERE RoleId = @roleId", new { roleId });
        return new RamRole(row.RoleId, row.RoleName, RoleArn(context.AccountId, row.RoleName), row.Description, row.AssumeRolePolicyDocument,
            DateTimeOffset.FromUnixTimeMilliseconds(row.CreateDate));
    }

    public static string RoleArn(string accountId, string roleName) => $"acs:ram::{accountId}:role/{roleName.ToLowerInvariant()}";

    /// <summary>The principal of a RAM user of the caller's account, found by its name in any case.</summary>
    public KmsPrincipal UserPrincipal(string accountId, string userName)
    {
        using var c = _store.Open();
        var user = FindUser(c, accountId, userName) ?? throw UserNotFound(userName);
        return new KmsPrincipal(PrincipalType.RamUser, accountId, user.UserId, user.UserName);
    }

    /// <summary>The principal of a role assumed by a user or a cloud service, found by its name in any case.</summary>
    public KmsPrincipal RolePrincipal(string accountId, string roleName, string sessionName)
    {
        using var c = _store.Open();
        var role = FindRole(c, accountId, roleName) ?? throw RoleNotFound(roleName);
        return new KmsPrincipal(PrincipalType.AssumedRole, accountId, $"{role.RoleId}:{sessionName}", $"{role.RoleName}/{sessionName}");
    }

    /// <summary>The name of a user as it was created, given its name in any case; null when there is no such user.</summary>
    public string? FindUserName(string accountId, string userName)
    {
        using var c = _store.Open();
        return FindUser(c, accountId, userName)?.UserName;
    }

    // A user or role by name without regard to case. A store from before names were unique in any
    // case may hold several: the exact spelling wins, so each stays reachable.
    private static (string UserId, string UserName)? FindUser(Microsoft.Data.Sqlite.SqliteConnection c, string accountId, string userName) =>
        c.QuerySingleOrDefault<(string UserId, string UserName)>(
            "SELECT UserId, UserName FROM Users WHERE AccountId = @accountId AND UserName = @userName COLLATE NOCASE " +
            "ORDER BY UserName = @userName DESC LIMIT 1", new { accountId, userName }) is { UserId: not null } found ? found : null;

    private static (string RoleId, string RoleName, string Trust)? FindRole(Microsoft.Data.Sqlite.SqliteConnection c, string accountId, string roleName) =>
        c.QuerySingleOrDefault<(string RoleId, string RoleName, string Trust)>(
            "SELECT RoleId, RoleName, AssumeRolePolicyDocument FROM Roles WHERE AccountId = @accountId AND RoleName = @roleName COLLATE NOCASE " +
            "ORDER BY RoleName = @roleName DESC LIMIT 1", new { accountId, roleName }) is { RoleId: not null } found ? found : null;

    // ---------------------------------------------------------------- access keys

    /// <summary>
    /// Whose access keys a CreateAccessKey or DeleteAccessKey call is about, as on Alibaba Cloud: the
    /// user named by <paramref name="userName"/>; without one, the caller itself, that is its own
    /// keys for a RAM user and the account root's keys (null) for the root only. A role session has
    /// no keys of its own and must name the user (<c>MissingParameter</c>).
    /// </summary>
    public static string? AccessKeyOwner(KmsCallContext context, string? userName)
    {
        ArgumentNullException.ThrowIfNull(context);
        return userName ?? context.Principal.Type switch
        {
            PrincipalType.Root => null,
            PrincipalType.RamUser => context.Principal.UserName,
            _ => throw new KmsException(KmsErrors.Codes.MissingParameter, 400,
                "The input parameter 'UserName' is mandatory for a role session: it has no access keys of its own. Name the RAM user whose key this is."),
        };
    }

    /// <summary>
    /// CreateAccessKey for the user named, or without a name for the caller itself (see
    /// <see cref="AccessKeyOwner"/>): only the account root gets a root key.
    /// </summary>
    public NewAccessKey CreateAccessKey(KmsCallContext context, string? userName = null)
    {
        userName = AccessKeyOwner(context, userName);
        if (userName is not null)
        {
            userName = UserPrincipal(context.AccountId, userName).UserName;
            using var c = _store.Open();
            var count = c.ExecuteScalar<long>("SELECT count(*) FROM AccessKeys WHERE AccountId = @AccountId AND UserName = @userName",
                new { context.AccountId, userName });
            if (count >= 2)
            {
                throw new KmsException("LimitExceeded.User.AccessKey", 409, $"The user '{userName}' already has 2 access keys. Delete one with DeleteAccessKey first.");
            }
        }

        var id = "LTAI" + RandomToken(20);
        var secret = new SecretBuffer(30);
        try
        {
            FillToken(secret.Span);
            var wrapped = _root.Wrap(secret.Span, SecretContext(id));
            var created = Now();
            _store.Insert("INSERT INTO AccessKeys (AccessKeyId, AccountId, UserName, Status, CreateDate, WrappedSecret) VALUES (@id, @AccountId, @userName, 'Active', @created, @wrapped)",
                new { id, context.AccountId, userName, created = created.ToUnixTimeMilliseconds(), wrapped },
                () => new KmsException("EntityAlreadyExists.AccessKey", 409, "Access key id collision; retry."));
            return new NewAccessKey(id, secret, created);
        }
        catch
        {
            secret.Dispose();
            throw;
        }
    }

    /// <summary>DeleteAccessKey of the user named, or without a name of the caller itself (see <see cref="AccessKeyOwner"/>).</summary>
    public void DeleteAccessKey(KmsCallContext context, string accessKeyId, string? userName = null)
    {
        userName = AccessKeyOwner(context, userName);
        using var c = _store.Open();
        userName = userName is null ? null : FindUser(c, context.AccountId, userName)?.UserName ?? userName;
        var deleted = c.Execute("DELETE FROM AccessKeys WHERE AccessKeyId = @accessKeyId AND AccountId = @AccountId AND " +
                                "((@userName IS NULL AND UserName IS NULL) OR UserName = @userName)", new { accessKeyId, context.AccountId, userName });
        Interlocked.Increment(ref _keyGeneration);
        Forget(_keys, accessKeyId);
        if (deleted == 0)
        {
            throw new KmsException("EntityNotExist.User.AccessKey", 404, $"The access key '{accessKeyId}' does not exist for this {(userName is null ? "account" : "user")}.");
        }
    }

    /// <summary>
    /// Finds an active access key: who it belongs to and its secret (for signature checks). Null
    /// when there is no such key. The caller disposes the secret.
    /// </summary>
    public (KmsPrincipal Principal, SecretBuffer Secret)? FindAccessKey(string accessKeyId)
    {
        var generation = Interlocked.Read(ref _keyGeneration);
        if (_keys.TryGetValue(accessKeyId, out var cached) && _time.GetElapsedTime(cached.LoadedAt) < CacheTtl && cached.Generation == generation &&
            cached.CopySecret() is { } copy)
        {
            return (cached.Principal, copy);
        }

        using var c = _store.Open();
        var row = c.QuerySingleOrDefault<(string AccountId, string? UserName, string Status, byte[] WrappedSecret)>(
            "SELECT AccountId, UserName, Status, WrappedSecret FROM AccessKeys WHERE AccessKeyId = @accessKeyId", new { accessKeyId });
        if (row.AccountId is null || row.Status != "Active")
        {
            Forget(_keys, accessKeyId);
            return null;
        }

        var principal = row.UserName is null ? KmsPrincipal.Root(row.AccountId) : UserPrincipal(row.AccountId, row.UserName);
        var entry = new CachedCredential(principal, _root.Unwrap(row.WrappedSecret, SecretContext(accessKeyId)), _time.GetTimestamp()) { Generation = generation };
        return (principal, Remember(_keys, accessKeyId, entry));
    }

    // Caches an entry (wiping the one it replaces) and returns the caller's copy of its secret.
    private static SecretBuffer Remember(System.Collections.Concurrent.ConcurrentDictionary<string, CachedCredential> cache, string id, CachedCredential entry)
    {
        var copy = entry.CopySecret()!;
        cache.AddOrUpdate(id, entry, (_, old) =>
        {
            old.Dispose();
            return entry;
        });
        return copy;
    }

    private static void Forget(System.Collections.Concurrent.ConcurrentDictionary<string, CachedCredential> cache, string id)
    {
        if (cache.TryRemove(id, out var old))
        {
            old.Dispose();
        }
    }

    // ---------------------------------------------------------------- STS

    /// <summary>The shortest and longest role sessions AssumeRole grants, in seconds.</summary>
    public const int MinSessionSeconds = 900, MaxSessionSeconds = 3600;

    /// <summary>The longest session policy AssumeRole accepts, in characters (as Alibaba STS).</summary>
    public const int MaxSessionPolicyLength = 2048;

    /// <summary>The longest custom policy document CreatePolicy accepts, as Alibaba RAM's CreatePolicy.</summary>
    public const int MaxPolicyDocumentLength = 6144;

    /// <summary>
    /// STS AssumeRole: temporary credentials for a session of the role named by
    /// <paramref name="roleArn"/>. The caller must be trusted by the role's trust policy; that its
    /// own policies allow <c>sts:AssumeRole</c> on the role is for the gateway to check, as for any call.
    /// A <paramref name="sessionPolicy"/> narrows the session to what both it and the role's policies allow.
    /// An <paramref name="externalId"/> is matched by trust-policy conditions on <c>sts:ExternalId</c>.
    /// </summary>
    public TemporaryCredentials AssumeRole(KmsCallContext context, string roleArn, string sessionName, int durationSeconds = MaxSessionSeconds,
        string? sessionPolicy = null, string? externalId = null)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (context.Principal.Type is not (PrincipalType.RamUser or PrincipalType.AssumedRole))
        {
            throw new KmsException("NoPermission", 403,
                "Roles may not be assumed by root accounts: call AssumeRole with the access key of a RAM user (or of a role session).");
        }

        if (sessionName is not { Length: >= 2 and <= 64 } || !sessionName.All(ch => char.IsAsciiLetterOrDigit(ch) || ch is '-' or '_' or '.' or '@'))
        {
            throw KmsErrors.InvalidParameter("RoleSessionName", "use 2 to 64 letters, digits, '-', '_', '.' or '@'.");
        }

        if (durationSeconds is < MinSessionSeconds or > MaxSessionSeconds)
        {
            throw KmsErrors.InvalidParameter("DurationSeconds", $"use {MinSessionSeconds} to {MaxSessionSeconds} seconds.");
        }

        if (sessionPolicy is not null)
        {
            CheckSessionPolicy(sessionPolicy);
        }

        if (externalId is not null && (externalId is not { Length: >= 2 and <= 1224 } ||
                                       !externalId.All(ch => char.IsAsciiLetterOrDigit(ch) || ch is '=' or ',' or '.' or '@' or ':' or '/' or '-' or '_')))
        {
            throw KmsErrors.InvalidParameter("ExternalId", "use 2 to 1224 letters, digits or =,.@:/-_ characters.");
        }

        var (accountId, roleName) = ParseRoleArn(roleArn);
        using var c = _store.Open();
        var role = FindRole(c, accountId, roleName) ?? throw RoleNotFound(roleName);
        if (role.Trust.Length == 0)
        {
            throw new KmsException("NoPermission", 403,
                $"The role '{role.RoleName}' has no trust policy (AssumeRolePolicyDocument), so it cannot be assumed through STS.");
        }

        var user = context.Principal.Type == PrincipalType.RamUser ? context.Principal.UserName : null;
        var conditions = new Dictionary<string, IReadOnlyList<string>>(StringComparer.OrdinalIgnoreCase)
        {
            ["acs:SourceIp"] = [context.SourceIp],
            ["acs:SecureTransport"] = [context.SecureTransport ? "true" : "false"],
        };
        if (externalId is not null)
        {
            conditions["sts:ExternalId"] = [externalId];
        }

        if (!TrustPolicy.Parse(role.Trust).Trusts(context.AccountId, user, conditions))
        {
            throw new KmsException("NoPermission", 403,
                $"The trust policy of role '{role.RoleName}' does not allow {context.Principal.UserName} of account {context.AccountId} to assume it" +
                (externalId is null ? " (if it requires an ExternalId, pass it)." : " with this ExternalId."));
        }

        var id = "STS." + RandomToken(24);
        var secret = new SecretBuffer(30);
        var token = new SecretBuffer(96);
        try
        {
            FillToken(secret.Span);
            FillToken(token.Span);
            var expiration = Now().AddSeconds(durationSeconds);
            // Expired sessions are kept a day, so that their use is refused as expired rather than unknown.
            c.Execute("DELETE FROM TemporaryKeys WHERE Expiration < @cutoff", new { cutoff = Now().AddDays(-1).ToUnixTimeSeconds() });
            foreach (var (staleId, stale) in _temporary)
            {
                if (stale.Expiration <= _time.GetUtcNow())
                {
                    Forget(_temporary, staleId);
                }
            }

            c.Execute("INSERT INTO TemporaryKeys (AccessKeyId, AccountId, RoleId, RoleName, SessionName, WrappedSecret, TokenHash, Expiration, SessionPolicy) " +
                      "VALUES (@id, @accountId, @RoleId, @RoleName, @sessionName, @wrapped, @hash, @expiration, @sessionPolicy)",
                new
                {
                    id, accountId, role.RoleId, role.RoleName, sessionName, wrapped = _root.Wrap(secret.Span, SecretContext(id)),
                    hash = SHA256.HashData(token.Span), expiration = expiration.ToUnixTimeSeconds(), sessionPolicy,
                });
            return new TemporaryCredentials(id, secret, token, expiration, $"{role.RoleId}:{sessionName}", $"{RoleArn(accountId, role.RoleName)}/{sessionName}");
        }
        catch
        {
            secret.Dispose();
            token.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Finds an STS access key and checks its security token and expiry: the role session it
    /// belongs to and its secret (the caller disposes it). Null when there is no such key; a wrong,
    /// missing or expired token is a <see cref="KmsException"/> with STS's codes.
    /// </summary>
    public (KmsPrincipal Principal, SecretBuffer Secret)? FindTemporaryAccessKey(string accessKeyId, string? securityToken)
    {
        if (!_temporary.TryGetValue(accessKeyId, out var session) || _time.GetElapsedTime(session.LoadedAt) >= CacheTtl)
        {
            using var c = _store.Open();
            var row = c.QuerySingleOrDefault<(string? AccountId, string RoleId, string RoleName, string SessionName, byte[] WrappedSecret, byte[] TokenHash, long Expiration, string? SessionPolicy)>(
                "SELECT AccountId, RoleId, RoleName, SessionName, WrappedSecret, TokenHash, Expiration, SessionPolicy FROM TemporaryKeys WHERE AccessKeyId = @accessKeyId",
                new { accessKeyId });
            if (row.AccountId is null)
            {
                Forget(_temporary, accessKeyId);
                return null;
            }

            var principal = new KmsPrincipal(PrincipalType.AssumedRole, row.AccountId, $"{row.RoleId}:{row.SessionName}", $"{row.RoleName}/{row.SessionName}")
            {
                SessionPolicy = row.SessionPolicy,
            };
            session = new CachedCredential(principal, _root.Unwrap(row.WrappedSecret, SecretContext(accessKeyId)), _time.GetTimestamp(),
                row.TokenHash, DateTimeOffset.FromUnixTimeSeconds(row.Expiration));
            Remember(_temporary, accessKeyId, session).Dispose();
        }

        if (string.IsNullOrEmpty(securityToken))
        {
            throw new KmsException("MissingSecurityToken", 400, $"The access key '{accessKeyId}' is temporary: sign the request with its SecurityToken parameter.");
        }

        if (!CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.ASCII.GetBytes(securityToken)), session.TokenHash))
        {
            throw new KmsException("InvalidSecurityToken.MismatchWithAccessKey", 400, "The SecurityToken does not belong to this access key.");
        }

        if (_time.GetUtcNow() >= session.Expiration)
        {
            throw new KmsException("InvalidSecurityToken.Expired", 400,
                $"The temporary credentials expired at {FormatDate(session.Expiration!.Value)}. Call AssumeRole again for new ones.");
        }

        // A concurrent reload may have wiped this entry meanwhile: then look again.
        return session.CopySecret() is { } copy ? (session.Principal, copy) : FindTemporaryAccessKey(accessKeyId, securityToken);
    }

    /// <summary>
    /// The ARN of the role that <paramref name="roleArn"/> names, as AssumeRole resolves it (the role
    /// name in any case), for authorizing <c>sts:AssumeRole</c>; null when it names no role.
    /// </summary>
    public string? CanonicalRoleArn(string roleArn)
    {
        try
        {
            var (accountId, roleName) = ParseRoleArn(roleArn);
            using var c = _store.Open();
            return FindRole(c, accountId, roleName) is { } role ? RoleArn(accountId, role.RoleName) : null;
        }
        catch (KmsException)
        {
            return null;
        }
    }

    private static (string AccountId, string RoleName) ParseRoleArn(string roleArn)
    {
        const string prefix = "acs:ram::";
        var marker = roleArn?.IndexOf(":role/", StringComparison.Ordinal) ?? -1;
        if (roleArn is null || !roleArn.StartsWith(prefix, StringComparison.Ordinal) || marker <= prefix.Length || marker + 6 >= roleArn.Length)
        {
            throw KmsErrors.InvalidParameter("RoleArn", "use acs:ram::ACCOUNT:role/ROLENAME.");
        }

        return (roleArn[prefix.Length..marker], roleArn[(marker + 6)..].ToLowerInvariant());
    }

    // ---------------------------------------------------------------- policies

    public RamPolicy CreatePolicy(KmsCallContext context, string policyName, string policyDocument, string? description = null)
    {
        CheckName(policyName, "PolicyName", 128);
        if (SystemPolicies.ContainsKey(policyName))
        {
            throw new KmsException("EntityAlreadyExists.Policy", 409, $"'{policyName}' is a system policy name.");
        }

        if (policyDocument.Length > MaxPolicyDocumentLength)
        {
            throw new KmsException("InvalidParameter.PolicyDocument.Length", 400,
                $"The PolicyDocument must be 1 to {MaxPolicyDocumentLength} characters long (as in Alibaba RAM); it has {policyDocument.Length}. Split it into several policies.");
        }

        PolicyDocument.Parse(policyDocument);
        var created = Now();
        _store.Insert("INSERT INTO Policies (AccountId, PolicyName, Description, PolicyDocument, CreateDate) VALUES (@AccountId, @policyName, @description, @policyDocument, @created)",
            new { context.AccountId, policyName, description = description ?? "", policyDocument, created = created.ToUnixTimeMilliseconds() },
            () => new KmsException("EntityAlreadyExists.Policy", 409, $"The policy '{policyName}' already exists."));
        return new RamPolicy(policyName, "Custom", description ?? "", policyDocument, created, 0);
    }

    public IReadOnlyList<RamPolicy> ListPolicies(KmsCallContext context)
    {
        using var c = _store.Open();
        var custom = c.Query<(string PolicyName, string Description, string PolicyDocument, long CreateDate, long Count)>(
            "SELECT p.PolicyName, p.Description, p.PolicyDocument, p.CreateDate, " +
            "(SELECT count(*) FROM Attachments a WHERE a.AccountId = p.AccountId AND a.PolicyType = 'Custom' AND a.PolicyName = p.PolicyName) " +
            "FROM Policies p WHERE p.AccountId = @AccountId ORDER BY p.PolicyName", new { context.AccountId })
            .Select(p => new RamPolicy(p.PolicyName, "Custom", p.Description, p.PolicyDocument, DateTimeOffset.FromUnixTimeMilliseconds(p.CreateDate), (int)p.Count));
        var system = SystemPolicies.OrderBy(p => p.Key, StringComparer.Ordinal)
            .Select(p => new RamPolicy(p.Key, "System", p.Value.Description, p.Value.Document, DateTimeOffset.UnixEpoch, 0));
        return [.. system, .. custom];
    }

    public void AttachPolicy(KmsCallContext context, string principalType, string principalName, string policyType, string policyName)
    {
        principalName = RequirePrincipal(context.AccountId, principalType, principalName);
        LoadPolicy(context.AccountId, policyType, policyName);
        using var c = _store.Open();
        c.Execute("INSERT OR IGNORE INTO Attachments (AccountId, PrincipalType, PrincipalName, PolicyType, PolicyName) VALUES (@AccountId, @principalType, @principalName, @policyType, @policyName)",
            new { context.AccountId, principalType, principalName, policyType, policyName });
        PoliciesChanged();
    }

    public void DetachPolicy(KmsCallContext context, string principalType, string principalName, string policyType, string policyName)
    {
        principalName = RequirePrincipal(context.AccountId, principalType, principalName);
        using var c = _store.Open();
        var removed = c.Execute("DELETE FROM Attachments WHERE AccountId = @AccountId AND PrincipalType = @principalType AND PrincipalName = @principalName AND PolicyType = @policyType AND PolicyName = @policyName",
            new { context.AccountId, principalType, principalName, policyType, policyName });
        PoliciesChanged();
        if (removed == 0)
        {
            throw new KmsException("EntityNotExist.Attachment", 404, $"The policy '{policyName}' is not attached to {principalType.ToLowerInvariant()} '{principalName}'.");
        }
    }

    /// <summary>The policies attached to a principal (empty for the root, which needs none).</summary>
    public IReadOnlyList<AttachedPolicy> PoliciesOf(KmsPrincipal principal)
    {
        var (type, name) = principal.Type switch
        {
            PrincipalType.RamUser => ("User", principal.UserName),
            PrincipalType.AssumedRole or PrincipalType.Service => ("Role", principal.UserName.Split('/')[0]),
            _ => (null, null),
        };
        if (type is null)
        {
            return [];
        }

        var cacheKey = $"{principal.AccountId}|{type}|{name}";
        var generation = Interlocked.Read(ref _policyGeneration);
        if (_policies.TryGetValue(cacheKey, out var cached) && _time.GetElapsedTime(cached.At) < CacheTtl && cached.Generation == generation)
        {
            return cached.Policies;
        }

        using var c = _store.Open();
        var policies = c.Query<(string PolicyType, string PolicyName)>(
                "SELECT PolicyType, PolicyName FROM Attachments WHERE AccountId = @AccountId AND PrincipalType = @type AND PrincipalName = @name ORDER BY PolicyType, PolicyName",
                new { principal.AccountId, type, name })
            .Select(a => LoadPolicy(principal.AccountId, a.PolicyType, a.PolicyName)).ToList();
        _policies[cacheKey] = (policies, _time.GetTimestamp(), generation);
        return policies;
    }

    // After an attachment is written: no list loaded before it is used again.
    private void PoliciesChanged()
    {
        Interlocked.Increment(ref _policyGeneration);
        _policies.Clear();
    }

    /// <summary>
    /// The decision for a call: the root may do everything; others what their policies allow, and a
    /// role session with a session policy only what that policy allows as well.
    /// </summary>
    public AccessDecision Authorize(KmsPrincipal principal, AccessRequest request)
    {
        ArgumentNullException.ThrowIfNull(principal);
        if (principal.Type == PrincipalType.Root)
        {
            return new AccessDecision(true, "AccountRoot");
        }

        var decision = PolicyEvaluator.Evaluate(PoliciesOf(principal), request);
        if (!decision.Allowed || principal.SessionPolicy is null)
        {
            return decision;
        }

        var session = PolicyEvaluator.Evaluate([SessionPolicyOf(principal.SessionPolicy)], request);
        return session.Allowed ? decision : session.Reason == "ExplicitDeny" ? session : new AccessDecision(false, NotInSessionPolicy);
    }

    /// <summary>The <see cref="AccessDecision.Reason"/> of a call the role allows but its session policy does not.</summary>
    public const string NotInSessionPolicy = "NotInSessionPolicy";

    /// <summary>The name session policies go by in decisions and audit events.</summary>
    public const string SessionPolicyName = "(session policy)";

    private static void CheckSessionPolicy(string document)
    {
        if (document.Length is 0 or > MaxSessionPolicyLength)
        {
            throw new KmsException("InvalidParameter.PolicySize", 400, $"The parameter Policy must be 1 to {MaxSessionPolicyLength} characters long.");
        }

        try
        {
            PolicyDocument.Parse(document);
        }
        catch (KmsException e)
        {
            throw new KmsException("InvalidParameter.PolicyGrammar", 400, $"The parameter Policy has not passed grammar check: {e.Message}", e);
        }
    }

    // Parsed session policies by their text; sessions are few and short-lived, so the cache is simply reset when large.
    private AttachedPolicy SessionPolicyOf(string document)
    {
        if (_sessionPolicies.TryGetValue(document, out var parsed))
        {
            return parsed;
        }

        if (_sessionPolicies.Count >= 1024)
        {
            _sessionPolicies.Clear();
        }

        return _sessionPolicies[document] = new AttachedPolicy(SessionPolicyName, "Session", PolicyDocument.Parse(document));
    }

    public void Dispose()
    {
        foreach (var id in _keys.Keys)
        {
            Forget(_keys, id);
        }

        foreach (var id in _temporary.Keys)
        {
            Forget(_temporary, id);
        }

        _ownedRoot?.Dispose();
    }

    // ---------------------------------------------------------------- internals

    private AttachedPolicy LoadPolicy(string accountId, string policyType, string policyName)
    {
        if (policyType == "System")
        {
            return SystemPolicies.TryGetValue(policyName, out var system)
                ? new AttachedPolicy(policyName, "System", PolicyDocument.Parse(system.Document))
                : throw PolicyNotFound(policyName);
        }

        if (policyType != "Custom")
        {
            throw KmsErrors.InvalidParameter("PolicyType", "use Custom or System.");
        }

        using var c = _store.Open();
        var document = c.QuerySingleOrDefault<string>("SELECT PolicyDocument FROM Policies WHERE AccountId = @accountId AND PolicyName = @policyName",
            new { accountId, policyName }) ?? throw PolicyNotFound(policyName);
        return new AttachedPolicy(policyName, "Custom", PolicyDocument.Parse(document));
    }

    // The principal's name as it was created (attachments are stored under it).
    private string RequirePrincipal(string accountId, string principalType, string principalName)
    {
        using var c = _store.Open();
        return principalType switch
        {
            "User" => (FindUser(c, accountId, principalName) ?? throw UserNotFound(principalName)).UserName,
            "Role" => (FindRole(c, accountId, principalName) ?? throw RoleNotFound(principalName)).RoleName,
            _ => throw KmsErrors.InvalidParameter("PrincipalType", "use User or Role."),
        };
    }

    private static KmsException UserNotFound(string name) => new("EntityNotExist.User", 404, $"The user '{name}' does not exist. Create it with CreateUser.");

    private static KmsException RoleNotFound(string name) => new("EntityNotExist.Role", 404, $"The role '{name}' does not exist. Create it with CreateRole.");

    private static KmsException UserExists(string name, string existing) => new("EntityAlreadyExists.User", 409, string.Equals(name, existing, StringComparison.Ordinal)
        ? $"The user '{name}' already exists."
        : $"The user '{existing}' already exists, and user names are unique without regard to case. Choose another name for '{name}'.");

    private static KmsException RoleExists(string name, string existing) => new("EntityAlreadyExists.Role", 409, string.Equals(name, existing, StringComparison.Ordinal)
        ? $"The role '{name}' already exists."
        : $"The role '{existing}' already exists, and role names are unique without regard to case. Choose another name for '{name}'.");

    private static KmsException PolicyNotFound(string name) => new("EntityNotExist.Policy", 404, $"The policy '{name}' does not exist. List policies with ListPolicies.");

    private static void CheckName(string name, string parameter, int max)
    {
        if (string.IsNullOrEmpty(name) || name.Length > max || !name.All(ch => char.IsAsciiLetterOrDigit(ch) || ch is '-' or '_' or '.' or '@'))
        {
            throw KmsErrors.InvalidParameter(parameter, $"use 1 to {max} letters, digits, '-', '_', '.' or '@'.");
        }
    }

    private static byte[] SecretContext(string accessKeyId) => Encoding.UTF8.GetBytes("TdeEngine/ram-access-key-secret/v1\0" + accessKeyId);

    private DateTimeOffset Now() => DateTimeOffset.FromUnixTimeSeconds(_time.GetUtcNow().ToUnixTimeSeconds());

    private static string RandomDigits(int length)
    {
        var chars = new char[length];
        chars[0] = (char)('1' + RandomNumberGenerator.GetInt32(9));
        for (var i = 1; i < length; i++)
        {
            chars[i] = (char)('0' + RandomNumberGenerator.GetInt32(10));
        }

        return new string(chars);
    }

    private static string RandomToken(int length)
    {
        Span<byte> bytes = stackalloc byte[length];
        FillToken(bytes);
        return Encoding.ASCII.GetString(bytes);
    }

    // Letters and digits, chosen without modulo bias.
    private static void FillToken(Span<byte> output)
    {
        for (var i = 0; i < output.Length; i++)
        {
            output[i] = (byte)SecretAlphabet[RandomNumberGenerator.GetInt32(SecretAlphabet.Length)];
        }
    }

    internal static string FormatDate(DateTimeOffset date) => date.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);
}
