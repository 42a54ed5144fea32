using System.Text;
using System.Text.Json;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Time.Testing;
using TdeEngine.Kms.Errors;
using TdeEngine.Kms.Identity;
using TdeEngine.Ram.Api;
using TdeEngine.Ram.Policies;

namespace TdeEngine.Ram.Tests;

/// <summary>STS AssumeRole: trust policies, temporary credentials, security tokens and expiry.</summary>
public sealed class StsTests : IDisposable
{
    private const string Account = "1111222233334444";
    private readonly string _home = Path.Combine(Path.GetTempPath(), "tde-sts-" + Guid.NewGuid().ToString("N"));
    private readonly FakeTimeProvider _clock = new(new DateTimeOffset(2026, 11, 28, 12, 0, 0, TimeSpan.Zero));
    private readonly RamService _ram;
    private readonly KmsCallContext _root = KmsCallContext.ForRoot(Account);
    private readonly string _roleArn;

    public StsTests()
    {
        _ram = RamService.Open(_home, time: _clock);
        _ram.CreateUser(_root, "deployer");
        _ram.CreateRole(_root, "OrdersKeyUser", """
            {"Version":"1","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Principal":{"RAM":["acs:ram::1111222233334444:root"]}}]}
            """);
        _roleArn = RamService.RoleArn(Account, "OrdersKeyUser");
    }

    public void Dispose()
    {
        _ram.Dispose();
        SqliteConnection.ClearAllPools();
        Directory.Delete(_home, recursive: true);
    }

    private KmsCallContext Deployer => new(_ram.UserPrincipal(Account, "deployer"), "127.0.0.1", KmsCallContext.NewRequestId());

    private static string Token(Kms.Secrets.SecretBuffer token) => Encoding.ASCII.GetString(token.Span);

    [Fact]
    public void A_trusted_user_gets_temporary_credentials_that_act_as_the_role_session_until_they_expire()
    {
        using var credentials = _ram.AssumeRole(Deployer, _roleArn, "deploy-42", 900);

        Assert.StartsWith("STS.", credentials.AccessKeyId, StringComparison.Ordinal);
        Assert.Equal(_clock.GetUtcNow().AddSeconds(900), credentials.Expiration);
        Assert.Equal($"acs:ram::{Account}:role/orderskeyuser/deploy-42", credentials.Arn);
        var found = _ram.FindTemporaryAccessKey(credentials.AccessKeyId, Token(credentials.SecurityToken));
        var (principal, secret) = Assert.NotNull(found);
        using (secret)
        {
            Assert.Equal(credentials.Secret.Span.ToArray(), secret.Span.ToArray());
        }

        Assert.Equal((PrincipalType.AssumedRole, "OrdersKeyUser/deploy-42"), (principal.Type, principal.UserName));
        Assert.Equal(credentials.AssumedRoleId, principal.PrincipalId);

        // The session has the role's policies, not the user's.
        _ram.AttachPolicy(_root, "Role", "OrdersKeyUser", "System", "AliyunKMSCryptoUserAccess");
        Assert.True(_ram.Authorize(principal, new AccessRequest("kms:Decrypt", "acs:kms:cn-hangzhou:1111222233334444:key/k1", new Dictionary<string, IReadOnlyList<string>>())).Allowed);

        _clock.Advance(TimeSpan.FromSeconds(900));
        var expired = Assert.Throws<KmsException>(() => _ram.FindTemporaryAccessKey(credentials.AccessKeyId, Token(credentials.SecurityToken)));
        Assert.Equal("InvalidSecurityToken.Expired", expired.Code);

        // Still refused as expired after the cache period and another AssumeRole's purge; gone a day later.
        _clock.Advance(_ram.CacheTtl);
        _ram.AssumeRole(Deployer, _roleArn, "later").Dispose();
        Assert.Equal("InvalidSecurityToken.Expired",
            Assert.Throws<KmsException>(() => _ram.FindTemporaryAccessKey(credentials.AccessKeyId, Token(credentials.SecurityToken))).Code);
        _clock.Advance(TimeSpan.FromDays(1) + _ram.CacheTtl);
        _ram.AssumeRole(Deployer, _roleArn, "much-later").Dispose();
        Assert.Null(_ram.FindTemporaryAccessKey(credentials.AccessKeyId, Token(credentials.SecurityToken)));
    }

    [Fact]
    public void The_security_token_must_be_present_and_belong_to_the_key()
    {
        using var first = _ram.AssumeRole(Deployer, _roleArn, "one");
        using var second = _ram.AssumeRole(Deployer, _roleArn, "two");

        Assert.Equal("MissingSecurityToken", Assert.Throws<KmsException>(() => _ram.FindTemporaryAccessKey(first.AccessKeyId, null)).Code);
        Assert.Equal("InvalidSecurityToken.MismatchWithAccessKey",
            Assert.Throws<KmsException>(() => _ram.FindTemporaryAccessKey(first.AccessKeyId, Token(second.SecurityToken))).Code);
        Assert.Null(_ram.FindTemporaryAccessKey("STS.doesnotexist", Token(first.SecurityToken)));
    }

    [Fact]
    public void Root_untrusted_callers_and_roles_without_a_trust_policy_are_refused()
    {
        Assert.Equal("NoPermission", Assert.Throws<KmsException>(() => _ram.AssumeRole(_root, _roleArn, "root-session")).Code);

        _ram.CreateRole(_root, "OnlyAlice", """
            {"Version":"1","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Principal":{"RAM":["acs:ram::1111222233334444:user/alice"]}}]}
            """);
        var refused = Assert.Throws<KmsException>(() => _ram.AssumeRole(Deployer, RamService.RoleArn(Account, "OnlyAlice"), "s1"));
        Assert.Equal("NoPermission", refused.Code);
        Assert.Contains("trust policy", refused.Message, StringComparison.Ordinal);

        _ram.CreateRole(_root, "NoTrust");
        Assert.Equal("NoPermission", Assert.Throws<KmsException>(() => _ram.AssumeRole(Deployer, RamService.RoleArn(Account, "NoTrust"), "s1")).Code);
        Assert.Equal("EntityNotExist.Role", Assert.Throws<KmsException>(() => _ram.AssumeRole(Deployer, RamService.RoleArn(Account, "Missing"), "s1")).Code);
    }

    [Theory]
    [InlineData("not-an-arn", "x1", 900, "RoleArn")]
    [InlineData("acs:ram::1111222233334444:role/OrdersKeyUser", "x", 900, "RoleSessionName")]
    [InlineData("acs:ram::1111222233334444:role/OrdersKeyUser", "has space", 900, "RoleSessionName")]
    [InlineData("acs:ram::1111222233334444:role/OrdersKeyUser", "ok-name", 899, "DurationSeconds")]
    [InlineData("acs:ram::1111222233334444:role/OrdersKeyUser", "ok-name", 3601, "DurationSeconds")]
    public void Bad_parameters_are_named(string arn, string session, int seconds, string parameter)
    {
        var e = Assert.Throws<KmsException>(() => _ram.AssumeRole(Deployer, arn, session, seconds));
        Assert.Contains(parameter, e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""{"Statement":[{"Effect":"Allow","Action":"kms:Decrypt","Principal":{"RAM":["acs:ram::1:root"]}}]}""", "Statement[0].Action")]
    [InlineData("""{"Statement":[{"Effect":"Maybe","Action":"sts:AssumeRole","Principal":{"RAM":["acs:ram::1:root"]}}]}""", "Statement[0].Effect")]
    [InlineData("""{"Statement":[{"Effect":"Allow","Action":"sts:AssumeRole"}]}""", "Statement[0].Principal")]
    [InlineData("""{"Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Principal":{"RAM":["alice"]}}]}""", "Statement[0].Principal.RAM")]
    [InlineData("""{"Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Principal":{"RAM":"acs:ram::1:root"}},{"Effect":"Deny","Action":"sts:AssumeRole","Principal":{"RAM":["acs:ram::1:user/temp-*"]}}]}""", "Statement[1].Principal.RAM")]
    [InlineData("""{"Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Principal":{"RAM":["acs:ram::*:root"]}}]}""", "Statement[0].Principal.RAM")]
    [InlineData("""{"Version":"1"}""", "Statement")]
    [InlineData("""{"Statement":[1]}""", "Statement[0]")]
    [InlineData("""{"Statement":["sts:AssumeRole"]}""", "Statement[0]")]
    [InlineData("""{"Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Principal":{"RAM":["acs:ram::1:user/\ud800"]}}]}""", "AssumeRolePolicyDocument")]
    [InlineData("""{"Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Principal":{"RAM":["acs:ram::1:root"]},"Resource":"*"}]}""", "Statement[0].Resource")]
    [InlineData("""{"Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Principal":{"RAM":["acs:ram::1:root"]},"Condition":{"StringEqual":{"sts:ExternalId":"x"}}}]}""", "Statement[0].Condition.StringEqual")]
    public void A_malformed_trust_policy_is_refused_at_CreateRole_naming_the_field(string document, string field)
    {
        var e = Assert.Throws<KmsException>(() => _ram.CreateRole(_root, "Bad" + Math.Abs(field.GetHashCode(StringComparison.Ordinal)), document));
        Assert.Equal("MalformedPolicyDocument", e.Code);
        Assert.Contains(field, e.Message, StringComparison.Ordinal);
    }

    private static AccessRequest Call(string action, string key) =>
        new(action, $"acs:kms:cn-hangzhou:{Account}:key/{key}", new Dictionary<string, IReadOnlyList<string>>());

    private KmsPrincipal Session(string name, string? policy)
    {
        using var credentials = _ram.AssumeRole(Deployer, _roleArn, name, 900, policy);
        var (principal, secret) = Assert.NotNull(_ram.FindTemporaryAccessKey(credentials.AccessKeyId, Token(credentials.SecurityToken)));
        secret.Dispose();
        return principal;
    }

    [Fact]
    public void A_session_policy_narrows_the_role_and_never_widens_it()
    {
        // The role may generate data keys and decrypt with any key.
        _ram.CreatePolicy(_root, "RoleCrypto", """
            {"Version":"1","Statement":[{"Effect":"Allow","Action":["kms:GenerateDataKey","kms:Decrypt"],"Resource":"acs:kms:*:*:key/*"}]}
            """);
        _ram.AttachPolicy(_root, "Role", "OrdersKeyUser", "Custom", "RoleCrypto");

        // This session may only generate data keys, and only with key k1; and asks for more than the role has.
        var narrow = Session("narrow", """
            {"Version":"1","Statement":[{"Effect":"Allow","Action":["kms:GenerateDataKey","kms:ScheduleKeyDeletion"],"Resource":"acs:kms:*:*:key/k1"}]}
            """);
        Assert.True(_ram.Authorize(narrow, Call("kms:GenerateDataKey", "k1")).Allowed);
        var decrypt = _ram.Authorize(narrow, Call("kms:Decrypt", "k1"));
        Assert.Equal((false, RamService.NotInSessionPolicy), (decrypt.Allowed, decrypt.Reason));
        Assert.False(_ram.Authorize(narrow, Call("kms:GenerateDataKey", "k2")).Allowed);
        Assert.False(_ram.Authorize(narrow, Call("kms:ScheduleKeyDeletion", "k1")).Allowed);   // the role does not allow it

        // An explicit Deny in the session policy names itself.
        var denying = Session("denying", """
            {"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"},{"Effect":"Deny","Action":"kms:Decrypt","Resource":"*"}]}
            """);
        var denied = _ram.Authorize(denying, Call("kms:Decrypt", "k1"));
        Assert.Equal((false, "ExplicitDeny", RamService.SessionPolicyName, 1), (denied.Allowed, denied.Reason, denied.PolicyName, denied.StatementIndex));
        Assert.True(_ram.Authorize(denying, Call("kms:GenerateDataKey", "k2")).Allowed);

        // Without a session policy the session has the role's permissions.
        Assert.True(_ram.Authorize(Session("plain", null), Call("kms:Decrypt", "k2")).Allowed);
    }

    [Fact]
    public void A_session_policy_survives_a_restart_of_the_service()
    {
        _ram.AttachPolicy(_root, "Role", "OrdersKeyUser", "System", "AliyunKMSCryptoUserAccess");
        using var credentials = _ram.AssumeRole(Deployer, _roleArn, "durable", 900, """
            {"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:Encrypt","Resource":"*"}]}
            """);
        using var reopened = RamService.Open(_home, time: _clock);
        var (principal, secret) = Assert.NotNull(reopened.FindTemporaryAccessKey(credentials.AccessKeyId, Token(credentials.SecurityToken)));
        secret.Dispose();
        Assert.True(reopened.Authorize(principal, Call("kms:Encrypt", "k1")).Allowed);
        Assert.False(reopened.Authorize(principal, Call("kms:Decrypt", "k1")).Allowed);
    }

    [Fact]
    public void A_store_from_before_session_policies_gains_the_column_and_keeps_its_sessions()
    {
        var home = Path.Combine(Path.GetTempPath(), "tde-sts-old-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(home);
        try
        {
            using (var old = new SqliteConnection($"Data Source={Path.Combine(home, "ram.db")}"))
            {
                old.Open();
                using var create = old.CreateCommand();
                create.CommandText = """
                    CREATE TABLE TemporaryKeys (AccessKeyId TEXT PRIMARY KEY, AccountId TEXT NOT NULL, RoleId TEXT NOT NULL, RoleName TEXT NOT NULL,
                        SessionName TEXT NOT NULL, WrappedSecret BLOB NOT NULL, TokenHash BLOB NOT NULL, Expiration INTEGER NOT NULL);
                    INSERT INTO TemporaryKeys VALUES ('STS.old', '1', 'r', 'R', 's', x'00', x'00', 9999999999);
                    """;
                create.ExecuteNonQuery();
            }

            using (var ram = RamService.Open(home, time: _clock))
            {
                var root = KmsCallContext.ForRoot(Account);
                ram.CreateUser(root, "deployer");
                ram.CreateRole(root, "R2", """{"Version":"1","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Principal":{"RAM":["acs:ram::1111222233334444:root"]}}]}""");
                var caller = new KmsCallContext(ram.UserPrincipal(Account, "deployer"), "127.0.0.1", KmsCallContext.NewRequestId());
                ram.AssumeRole(caller, RamService.RoleArn(Account, "R2"), "new", 900, """{"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:Encrypt","Resource":"*"}]}""").Dispose();
            }

            using var check = new SqliteConnection($"Data Source={Path.Combine(home, "ram.db")}");
            check.Open();
            using var count = check.CreateCommand();
            count.CommandText = "SELECT count(*) FROM TemporaryKeys WHERE SessionPolicy IS NULL AND AccessKeyId = 'STS.old'";
            Assert.Equal(1L, (long)count.ExecuteScalar()!);
            count.CommandText = "SELECT count(*) FROM TemporaryKeys WHERE SessionPolicy LIKE '%kms:Encrypt%'";
            Assert.Equal(1L, (long)count.ExecuteScalar()!);
        }
        finally
        {
            SqliteConnection.ClearAllPools();
            Directory.Delete(home, recursive: true);
        }
    }

    [Theory]
    [InlineData("""{"Version":"1","Statement":[{"Effect":"Perhaps","Action":"kms:Decrypt","Resource":"*"}]}""", "InvalidParameter.PolicyGrammar", "Statement[0].Effect")]
    [InlineData("""not json""", "InvalidParameter.PolicyGrammar", "Policy")]
    [InlineData("", "InvalidParameter.PolicySize", "Policy")]
    public void A_bad_session_policy_is_refused_with_STS_codes(string policy, string code, string named)
    {
        var e = Assert.Throws<KmsException>(() => _ram.AssumeRole(Deployer, _roleArn, "bad", 900, policy));
        Assert.Equal((code, 400), (e.Code, e.HttpStatus));
        Assert.Contains(named, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_session_policy_longer_than_2048_characters_is_refused()
    {
        var resources = string.Join(",", Enumerable.Range(0, 100).Select(i => $"\"acs:kms:*:*:key/k{i}\""));
        var policy = $$"""{"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:Decrypt","Resource":[{{resources}}]}]}""";
        Assert.True(policy.Length > RamService.MaxSessionPolicyLength);
        Assert.Equal("InvalidParameter.PolicySize", Assert.Throws<KmsException>(() => _ram.AssumeRole(Deployer, _roleArn, "long", 900, policy)).Code);
    }

    [Fact]
    public void A_trust_policy_condition_on_the_external_id_must_hold()
    {
        _ram.CreateRole(_root, "PartnerAccess", """
            {"Version":"1","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Principal":{"RAM":["acs:ram::1111222233334444:root"]},
             "Condition":{"StringEquals":{"sts:ExternalId":"orders-7f3"}}}]}
            """);
        var arn = RamService.RoleArn(Account, "PartnerAccess");

        var missing = Assert.Throws<KmsException>(() => _ram.AssumeRole(Deployer, arn, "p1", 900));
        Assert.Equal(("NoPermission", 403), (missing.Code, missing.HttpStatus));
        Assert.Contains("ExternalId", missing.Message, StringComparison.Ordinal);
        Assert.Equal("NoPermission", Assert.Throws<KmsException>(() => _ram.AssumeRole(Deployer, arn, "p2", 900, externalId: "orders-000")).Code);
        using var granted = _ram.AssumeRole(Deployer, arn, "p3", 900, externalId: "orders-7f3");
        Assert.StartsWith("STS.", granted.AccessKeyId, StringComparison.Ordinal);

        // A role whose trust policy has no condition does not care about an ExternalId.
        _ram.AssumeRole(Deployer, _roleArn, "p4", 900, externalId: "anything").Dispose();
        Assert.Contains("ExternalId", Assert.Throws<KmsException>(() => _ram.AssumeRole(Deployer, arn, "p5", 900, externalId: "bad id!")).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void UpdateRole_replaces_the_trust_policy_so_an_existing_role_can_require_an_external_id()
    {
        _ram.AssumeRole(Deployer, _roleArn, "before", 900).Dispose();
        var api = new RamApi(_ram);
        using var updated = api.Invoke(_root, "UpdateRole", new Dictionary<string, string>
        {
            ["RoleName"] = "OrdersKeyUser",
            ["NewAssumeRolePolicyDocument"] = """
                {"Version":"1","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Principal":{"RAM":["acs:ram::1111222233334444:root"]},
                 "Condition":{"StringEquals":{"sts:ExternalId":"partner-9"}}}]}
                """,
        });
        Assert.True(updated.IsSuccess, updated.ErrorMessage);
        var role = JsonDocument.Parse(updated.Body.ToArray()).RootElement.GetProperty("Role");
        Assert.Contains("partner-9", role.GetProperty("AssumeRolePolicyDocument").GetString(), StringComparison.Ordinal);
        Assert.Equal(_roleArn, role.GetProperty("Arn").GetString());

        Assert.Equal("NoPermission", Assert.Throws<KmsException>(() => _ram.AssumeRole(Deployer, _roleArn, "after", 900)).Code);
        _ram.AssumeRole(Deployer, _roleArn, "after", 900, externalId: "partner-9").Dispose();

        // The description alone can change; a bad policy or an unknown role is refused and changes nothing.
        Assert.Equal("keys for orders", _ram.UpdateRole(_root, "OrdersKeyUser", newDescription: "keys for orders").Description);
        var malformed = Assert.Throws<KmsException>(() => _ram.UpdateRole(_root, "OrdersKeyUser", """{"Statement":[{"Effect":"Allow","Action":"kms:Decrypt","Principal":{"RAM":["acs:ram::1:root"]}}]}"""));
        Assert.Equal("MalformedPolicyDocument", malformed.Code);
        Assert.Contains("partner-9", _ram.UpdateRole(_root, "OrdersKeyUser").AssumeRolePolicyDocument, StringComparison.Ordinal);
        Assert.Equal("EntityNotExist.Role", Assert.Throws<KmsException>(() => _ram.UpdateRole(_root, "NoSuchRole", newDescription: "x")).Code);
    }

    [Fact]
    public void A_trust_policy_condition_on_the_source_ip_must_hold()
    {
        _ram.CreateRole(_root, "OfficeOnly", """
            {"Version":"1","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Principal":{"RAM":["acs:ram::1111222233334444:root"]},
             "Condition":{"IpAddress":{"acs:SourceIp":"10.0.0.0/8"}}}]}
            """);
        var arn = RamService.RoleArn(Account, "OfficeOnly");
        var office = new KmsCallContext(_ram.UserPrincipal(Account, "deployer"), "10.1.2.3", KmsCallContext.NewRequestId());

        Assert.Equal("NoPermission", Assert.Throws<KmsException>(() => _ram.AssumeRole(Deployer, arn, "home", 900)).Code);   // 127.0.0.1
        _ram.AssumeRole(office, arn, "office", 900).Dispose();
    }

    [Fact]
    public void A_trust_policy_naming_a_user_trusts_that_user_only_because_no_other_user_can_share_its_name_in_another_case()
    {
        _ram.CreateUser(_root, "bob");
        _ram.CreateUser(_root, "bobby");
        _ram.CreateRole(_root, "BobOnly", """
            {"Version":"1","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Principal":{"RAM":["acs:ram::1111222233334444:user/bob"]}}]}
            """);
        _ram.CreateRole(_root, "BobUpper", """
            {"Version":"1","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Principal":{"RAM":["acs:ram::1111222233334444:user/BOB"]}}]}
            """);
        KmsCallContext As(string user) => new(_ram.UserPrincipal(Account, user), "127.0.0.1", KmsCallContext.NewRequestId());

        Assert.Equal("EntityAlreadyExists.User", Assert.Throws<KmsException>(() => _ram.CreateUser(_root, "Bob")).Code);
        _ram.AssumeRole(As("bob"), RamService.RoleArn(Account, "BobOnly"), "s1").Dispose();
        _ram.AssumeRole(As("BOB"), RamService.RoleArn(Account, "BobOnly"), "s2").Dispose();
        _ram.AssumeRole(As("bob"), RamService.RoleArn(Account, "BobUpper"), "s3").Dispose();
        Assert.Equal("NoPermission", Assert.Throws<KmsException>(() => _ram.AssumeRole(As("bobby"), RamService.RoleArn(Account, "BobOnly"), "s4")).Code);
    }

    [Fact]
    public void The_STS_API_writes_Alibaba_shaped_answers()
    {
        var sts = new StsApi(_ram);
        using var response = sts.Invoke(Deployer, "AssumeRole", new Dictionary<string, string> { ["RoleArn"] = _roleArn, ["RoleSessionName"] = "api" });
        Assert.True(response.IsSuccess, response.ErrorMessage);
        var body = JsonDocument.Parse(response.Body.ToArray()).RootElement;
        var credentials = body.GetProperty("Credentials");
        Assert.StartsWith("STS.", credentials.GetProperty("AccessKeyId").GetString(), StringComparison.Ordinal);
        Assert.Equal(96, credentials.GetProperty("SecurityToken").GetString()!.Length);
        Assert.Equal("2026-11-28T13:00:00Z", credentials.GetProperty("Expiration").GetString());
        Assert.EndsWith(":api", body.GetProperty("AssumedRoleUser").GetProperty("AssumedRoleId").GetString(), StringComparison.Ordinal);

        var session = Assert.NotNull(_ram.FindTemporaryAccessKey(credentials.GetProperty("AccessKeyId").GetString()!, credentials.GetProperty("SecurityToken").GetString()));
        session.Secret.Dispose();
        using var who = sts.Invoke(new KmsCallContext(session.Principal, "127.0.0.1", KmsCallContext.NewRequestId()), "GetCallerIdentity", new Dictionary<string, string>());
        var identity = JsonDocument.Parse(who.Body.ToArray()).RootElement;
        Assert.Equal(("AssumedRoleUser", $"acs:ram::{Account}:role/orderskeyuser/api"), (identity.GetProperty("IdentityType").GetString(), identity.GetProperty("Arn").GetString()));
    }
}

/// <summary>Access-key secrets are unwrapped by the root key once per cache period, not once per request.</summary>
public sealed class AccessKeyCacheTests : IDisposable
{
    private readonly string _home = Path.Combine(Path.GetTempPath(), "tde-akcache-" + Guid.NewGuid().ToString("N"));
    private readonly FakeTimeProvider _clock = new(DateTimeOffset.UtcNow);
    private readonly CountingRoot _root;
    private readonly RamService _ram;
    private readonly KmsCallContext _caller = KmsCallContext.ForRoot("1111222233334444");

    public AccessKeyCacheTests()
    {
        Directory.CreateDirectory(_home);
        _root = new CountingRoot(Kms.RootKeys.FileRootKeyProvider.OpenOrCreate(Path.Combine(_home, "root.key")));
        _ram = RamService.Open(_home, _root, _clock);
    }

    public void Dispose()
    {
        _ram.Dispose();
        _root.Inner.Dispose();
        SqliteConnection.ClearAllPools();
        Directory.Delete(_home, recursive: true);
    }

    [Fact]
    public void A_secret_is_unwrapped_once_per_cache_period_and_forgotten_when_the_key_is_deleted()
    {
        using var key = _ram.CreateAccessKey(_caller);
        var expected = key.Secret.Span.ToArray();
        for (var i = 0; i < 100; i++)
        {
            var (_, secret) = Assert.NotNull(_ram.FindAccessKey(key.AccessKeyId));
            using (secret)
            {
                Assert.Equal(expected, secret.Span.ToArray());
            }
        }

        Assert.Equal(1, _root.Unwraps);
        _clock.Advance(_ram.CacheTtl);
        _ram.FindAccessKey(key.AccessKeyId)!.Value.Secret.Dispose();
        Assert.Equal(2, _root.Unwraps);

        _ram.DeleteAccessKey(_caller, key.AccessKeyId);
        Assert.Null(_ram.FindAccessKey(key.AccessKeyId));
    }

    [Fact]
    public async Task A_deleted_key_is_refused_at_once_even_while_other_requests_with_it_are_checked()
    {
        var stale = 0;
        for (var round = 0; round < 40; round++)
        {
            using var key = _ram.CreateAccessKey(_caller);
            using var stop = new CancellationTokenSource();
            // Other requests signed with the key, each past the cache period, looking it up while it is deleted.
            var other = Task.Run(() =>
            {
                while (!stop.IsCancellationRequested)
                {
                    _clock.Advance(_ram.CacheTtl);
                    _ram.FindAccessKey(key.AccessKeyId)?.Secret.Dispose();
                }
            });
            await Task.Delay(5);
            _ram.DeleteAccessKey(_caller, key.AccessKeyId);
            await stop.CancelAsync();
            await other;
            if (_ram.FindAccessKey(key.AccessKeyId) is { } found)
            {
                found.Secret.Dispose();
                stale++;
            }
        }

        Assert.Equal(0, stale);
    }

    [Fact]
    public void Concurrent_lookups_while_entries_are_replaced_always_see_the_right_secret()
    {
        using var key = _ram.CreateAccessKey(_caller);
        var expected = key.Secret.Span.ToArray();
        _ram.CacheTtl = TimeSpan.Zero;   // every lookup reloads and replaces (and wipes) the cached entry
        Parallel.For(0, 4000, new ParallelOptions { MaxDegreeOfParallelism = 8 }, _ =>
        {
            var (_, secret) = _ram.FindAccessKey(key.AccessKeyId)!.Value;
            using (secret)
            {
                Assert.Equal(expected, secret.Span.ToArray());
            }
        });
    }

    private sealed class CountingRoot(Kms.RootKeys.FileRootKeyProvider inner) : Kms.RootKeys.IRootKeyProvider
    {
        private int _unwraps;

        public Kms.RootKeys.FileRootKeyProvider Inner => inner;

        public int Unwraps => Volatile.Read(ref _unwraps);

        public string RootKeyId => inner.RootKeyId;

        public byte[] Wrap(ReadOnlySpan<byte> material, ReadOnlySpan<byte> context) => inner.Wrap(material, context);

        public Kms.Secrets.SecretBuffer Unwrap(ReadOnlySpan<byte> wrapped, ReadOnlySpan<byte> context)
        {
            Interlocked.Increment(ref _unwraps);
            return inner.Unwrap(wrapped, context);
        }
    }
}
