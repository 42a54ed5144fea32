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
    [InlineData("""{"Version":"1"}""", "Statement")]
    public void A_malformed_trust_policy_is_refused_at_CreateRole_naming_the_field(string document, string field)
    {
        var e = Assert.Throws<KmsException>(() => _ram.CreateRole(_root, "Bad" + Math.Abs(field.GetHashCode(StringComparison.Ordinal)), document));
        Assert.Equal("MalformedPolicyDocument", e.Code);
        Assert.Contains(field, e.Message, StringComparison.Ordinal);
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
