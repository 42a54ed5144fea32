using System.Text;
using System.Text.Json;
using Microsoft.Data.Sqlite;
using TdeEngine.Kms.Errors;
using TdeEngine.Kms.Identity;
using TdeEngine.Ram.Api;
using TdeEngine.Ram.Policies;

namespace TdeEngine.Ram.Tests;

public sealed class RamServiceTests : IDisposable
{
    private readonly string _home = Path.Combine(Path.GetTempPath(), "tde-ram-" + Guid.NewGuid().ToString("N"));
    private readonly RamService _ram;
    private readonly KmsCallContext _root = KmsCallContext.ForRoot("1111222233334444");

    public RamServiceTests() => _ram = RamService.Open(_home);

    public void Dispose()
    {
        _ram.Dispose();
        SqliteConnection.ClearAllPools();
        Directory.Delete(_home, recursive: true);
    }

    private static AccessRequest Decrypt(string key = "acs:kms:cn-hangzhou:1111222233334444:key/k1") =>
        new("kms:Decrypt", key, new Dictionary<string, IReadOnlyList<string>>());

    [Fact]
    public void A_policy_document_longer_than_6144_characters_is_refused_and_one_of_6144_is_kept()
    {
        static string Document(int length)
        {
            const string head = """{"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:Decrypt","Resource":["acs:kms:*:*:key/""";
            const string tail = "\"]}]}";
            return head + new string('k', length - head.Length - tail.Length) + tail;
        }

        var e = Assert.Throws<KmsException>(() => _ram.CreatePolicy(_root, "TooLong", Document(6145)));
        var kept = _ram.CreatePolicy(_root, "JustRight", Document(6144));

        Assert.Equal((400, "InvalidParameter.PolicyDocument.Length"), (e.HttpStatus, e.Code));
        Assert.Contains("6145", e.Message, StringComparison.Ordinal);
        Assert.Equal(6144, kept.PolicyDocument.Length);
        Assert.DoesNotContain(_ram.ListPolicies(_root), p => p.PolicyName == "TooLong");
    }

    [Fact]
    public void A_user_is_denied_until_a_policy_is_attached_and_again_after_it_is_detached()
    {
        _ram.CreateUser(_root, "alice");
        var alice = _ram.UserPrincipal(_root.AccountId, "alice");
        Assert.False(_ram.Authorize(alice, Decrypt()).Allowed);

        _ram.CreatePolicy(_root, "DecryptOrders", """{"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:Decrypt","Resource":"acs:kms:*:*:key/*"}]}""");
        _ram.AttachPolicy(_root, "User", "alice", "Custom", "DecryptOrders");
        Assert.True(_ram.Authorize(alice, Decrypt()).Allowed);

        _ram.DetachPolicy(_root, "User", "alice", "Custom", "DecryptOrders");
        Assert.False(_ram.Authorize(alice, Decrypt()).Allowed);
    }

    [Fact]
    public async Task A_detached_policy_stops_applying_at_once_even_while_other_calls_of_the_same_user_run()
    {
        _ram.CreateUser(_root, "alice");
        var alice = _ram.UserPrincipal(_root.AccountId, "alice");
        _ram.CreatePolicy(_root, "DecryptOrders", """{"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:Decrypt","Resource":"acs:kms:*:*:key/*"}]}""");
        var stale = 0;
        for (var round = 0; round < 40; round++)
        {
            _ram.AttachPolicy(_root, "User", "alice", "Custom", "DecryptOrders");
            using var stop = new CancellationTokenSource();
            // Another request of the same user, reloading its policies while the detach is written.
            var other = Task.Run(() =>
            {
                while (!stop.IsCancellationRequested)
                {
                    _ram.Authorize(alice, Decrypt());
                }
            });
            await Task.Delay(5);
            _ram.DetachPolicy(_root, "User", "alice", "Custom", "DecryptOrders");
            stale += _ram.Authorize(alice, Decrypt()).Allowed ? 1 : 0;
            await stop.CancelAsync();
            await other;
        }

        Assert.Equal(0, stale);
    }

    [Fact]
    public void System_policies_can_be_attached_to_roles()
    {
        _ram.CreateRole(_root, "AliyunRDSInstanceEncryptionDefaultRole", description: "RDS TDE");
        _ram.AttachPolicy(_root, "Role", "AliyunRDSInstanceEncryptionDefaultRole", "System", "AliyunKMSCryptoUserAccess");
        var rds = _ram.RolePrincipal(_root.AccountId, "AliyunRDSInstanceEncryptionDefaultRole", "rds-instance-1");

        Assert.True(_ram.Authorize(rds, Decrypt()).Allowed);
        Assert.False(_ram.Authorize(rds, Decrypt() with { Action = "kms:ScheduleKeyDeletion" }).Allowed);
        Assert.Equal(PrincipalType.AssumedRole, rds.Type);
    }

    [Fact]
    public void Access_keys_are_created_found_and_deleted_and_their_secret_is_not_stored_in_plaintext()
    {
        _ram.CreateUser(_root, "bob");
        using var key = _ram.CreateAccessKey(_root, "bob");
        using var rootKey = _ram.CreateAccessKey(_root);
        var secret = Encoding.ASCII.GetString(key.Secret.Span);

        var found = _ram.FindAccessKey(key.AccessKeyId)!.Value;
        using (found.Secret)
        {
            Assert.Equal(secret, Encoding.ASCII.GetString(found.Secret.Span));
            Assert.Equal(("bob", PrincipalType.RamUser), (found.Principal.UserName, found.Principal.Type));
        }

        Assert.Equal(PrincipalType.Root, _ram.FindAccessKey(rootKey.AccessKeyId)!.Value.Principal.Type);
        Assert.Matches("^LTAI[A-Za-z0-9]{20}$", key.AccessKeyId);
        Assert.Equal(30, secret.Length);
        foreach (var file in Directory.GetFiles(_home))
        {
            Assert.DoesNotContain(secret, Encoding.ASCII.GetString(File.ReadAllBytes(file)), StringComparison.Ordinal);
        }

        _ram.DeleteAccessKey(_root, key.AccessKeyId, "bob");
        Assert.Null(_ram.FindAccessKey(key.AccessKeyId));
        Assert.Equal("EntityNotExist.User.AccessKey", Assert.Throws<KmsException>(() => _ram.DeleteAccessKey(_root, key.AccessKeyId, "bob")).Code);
    }

    [Fact]
    public void A_user_holds_at_most_two_access_keys()
    {
        _ram.CreateUser(_root, "carol");
        _ram.CreateAccessKey(_root, "carol").Dispose();
        _ram.CreateAccessKey(_root, "carol").Dispose();

        Assert.Equal("LimitExceeded.User.AccessKey", Assert.Throws<KmsException>(() => _ram.CreateAccessKey(_root, "carol")).Code);
    }

    [Fact]
    public void Entities_are_unique_and_missing_ones_are_named()
    {
        _ram.CreateUser(_root, "dave");

        Assert.Equal("EntityAlreadyExists.User", Assert.Throws<KmsException>(() => _ram.CreateUser(_root, "dave")).Code);
        Assert.Equal("EntityNotExist.User", Assert.Throws<KmsException>(() => _ram.AttachPolicy(_root, "User", "erin", "System", "AliyunKMSFullAccess")).Code);
        Assert.Equal("EntityNotExist.Policy", Assert.Throws<KmsException>(() => _ram.AttachPolicy(_root, "User", "dave", "Custom", "Nope")).Code);
        Assert.Equal("MalformedPolicyDocument", Assert.Throws<KmsException>(() => _ram.CreatePolicy(_root, "Bad", "{}")).Code);
    }

    [Fact]
    public void The_RAM_API_answers_in_Alibaba_shapes_and_simulates_decisions()
    {
        var api = new RamApi(_ram);
        JsonElement Call(string action, params (string, string)[] p)
        {
            using var response = api.Invoke(_root, action, p.ToDictionary(x => x.Item1, x => x.Item2));
            Assert.True(response.IsSuccess, Encoding.UTF8.GetString(response.Body));
            return JsonDocument.Parse(response.Body.ToArray()).RootElement.Clone();
        }

        Call("CreateUser", ("UserName", "frank"));
        var key = Call("CreateAccessKey").GetProperty("AccessKey");
        Call("CreatePolicy", ("PolicyName", "OnlyOrders"), ("PolicyDocument",
            """{"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:Decrypt","Resource":"*","Condition":{"StringEquals":{"kms:EncryptionContext:db":"orders"}}}]}"""));
        Call("AttachPolicyToUser", ("PolicyType", "Custom"), ("PolicyName", "OnlyOrders"), ("UserName", "frank"));
        var allowed = Call("SimulatePolicy", ("UserName", "frank"), ("Action", "kms:Decrypt"), ("Resource", "acs:kms:cn-hangzhou:1:key/x"), ("EncryptionContext", "{\"db\":\"orders\"}"));
        var denied = Call("SimulatePolicy", ("UserName", "frank"), ("Action", "kms:Decrypt"), ("Resource", "acs:kms:cn-hangzhou:1:key/x"), ("EncryptionContext", "{\"db\":\"hr\"}"));
        var policies = Call("ListPolicies", ("PolicyType", "Custom")).GetProperty("Policies").GetProperty("Policy");
        const string denyProd = """{"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"},{"Effect":"Deny","Action":"kms:*","Resource":"*","Condition":{"StringEquals":{"kms:tag/Env":"prod"}}}]}""";
        var caseTags = Call("SimulatePolicy", ("PolicyDocument", denyProd), ("Action", "kms:Decrypt"), ("Resource", "acs:kms:cn-hangzhou:1:key/x"),
            ("Tags", """[{"TagKey":"Env","TagValue":"prod"},{"TagKey":"env","TagValue":"dev"}]"""));

        const string httpsOnly = """{"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"},{"Effect":"Deny","Action":"kms:*","Resource":"*","Condition":{"Bool":{"acs:SecureTransport":"false"}}}]}""";
        var overHttp = Call("SimulatePolicy", ("PolicyDocument", httpsOnly), ("Action", "kms:Decrypt"), ("Resource", "acs:kms:cn-hangzhou:1:key/x"), ("SecureTransport", "false"));
        var overHttps = Call("SimulatePolicy", ("PolicyDocument", httpsOnly), ("Action", "kms:Decrypt"), ("Resource", "acs:kms:cn-hangzhou:1:key/x"), ("SecureTransport", "true"));
        using var noPrincipal = api.Invoke(_root, "SimulatePolicy", new Dictionary<string, string> { ["Action"] = "kms:Decrypt", ["Resource"] = "*" });

        Assert.Equal(["AccessKeyId", "AccessKeySecret", "Status", "CreateDate"], key.EnumerateObject().Select(p => p.Name));
        Assert.Equal("ExplicitDeny", overHttp.GetProperty("Decision").GetString());
        Assert.Equal("Allow", overHttps.GetProperty("Decision").GetString());
        Assert.Contains("--UserName NAME, --RoleName NAME or --PolicyDocument JSON", Encoding.UTF8.GetString(noPrincipal.Body), StringComparison.Ordinal);
        Assert.Equal("Active", key.GetProperty("Status").GetString());
        Assert.Equal(("Allow", "OnlyOrders", 0), (allowed.GetProperty("Decision").GetString(), allowed.GetProperty("MatchedPolicy").GetString(), allowed.GetProperty("MatchedStatement").GetInt32()));
        Assert.Equal("ImplicitDeny", denied.GetProperty("Decision").GetString());
        Assert.Equal("ExplicitDeny", caseTags.GetProperty("Decision").GetString());
        Assert.Equal(1, policies[0].GetProperty("AttachmentCount").GetInt32());
    }

    [Fact]
    public void User_and_role_names_are_unique_without_regard_to_case_and_found_by_any_case()
    {
        _ram.CreateUser(_root, "alice");
        _ram.CreateRole(_root, "Ops", description: "first");

        Assert.Equal("EntityAlreadyExists.User", Assert.Throws<KmsException>(() => _ram.CreateUser(_root, "Alice")).Code);
        Assert.Equal("EntityAlreadyExists.Role", Assert.Throws<KmsException>(() => _ram.CreateRole(_root, "ops")).Code);
        Assert.Equal("alice", _ram.UserPrincipal(_root.AccountId, "ALICE").UserName);
        Assert.Equal("Ops/s1", _ram.RolePrincipal(_root.AccountId, "OPS", "s1").UserName);

        var updated = _ram.UpdateRole(_root, "oPs", newDescription: "second");
        Assert.Equal(("Ops", "second"), (updated.RoleName, updated.Description));

        // Attached through another spelling, the policy applies to the one user.
        _ram.AttachPolicy(_root, "User", "ALICE", "System", "AliyunKMSCryptoUserAccess");
        Assert.True(_ram.Authorize(_ram.UserPrincipal(_root.AccountId, "alice"), Decrypt()).Allowed);
    }

    [Fact]
    public void A_store_made_with_the_old_case_sensitive_schema_refuses_new_names_that_differ_only_in_case()
    {
        var home = Path.Combine(_home, "legacy");
        Directory.CreateDirectory(home);
        using (var db = new SqliteConnection("Data Source=" + Path.Combine(home, "ram.db")))
        {
            db.Open();
            using var create = db.CreateCommand();
            create.CommandText = """
                CREATE TABLE Users (UserId TEXT PRIMARY KEY, AccountId TEXT NOT NULL, UserName TEXT NOT NULL,
                    DisplayName TEXT NOT NULL, CreateDate INTEGER NOT NULL, UNIQUE (AccountId, UserName));
                CREATE TABLE Roles (RoleId TEXT PRIMARY KEY, AccountId TEXT NOT NULL, RoleName TEXT NOT NULL, Description TEXT NOT NULL,
                    AssumeRolePolicyDocument TEXT NOT NULL, CreateDate INTEGER NOT NULL, UNIQUE (AccountId, RoleName));
                INSERT INTO Users VALUES ('1', '1111222233334444', 'bob', 'bob', 0);
                INSERT INTO Roles VALUES ('2', '1111222233334444', 'Ops', 'one', '', 0);
                INSERT INTO Roles VALUES ('3', '1111222233334444', 'ops', 'two', '', 0);
                """;
            create.ExecuteNonQuery();
        }

        using var ram = RamService.Open(home);

        Assert.Equal("EntityAlreadyExists.User", Assert.Throws<KmsException>(() => ram.CreateUser(_root, "Bob")).Code);
        Assert.Equal("EntityAlreadyExists.Role", Assert.Throws<KmsException>(() => ram.CreateRole(_root, "OPS")).Code);
        // Two roles made before the change keep working; an exact spelling picks its own, and an update touches one role only.
        Assert.Equal("3:s", ram.RolePrincipal(_root.AccountId, "ops", "s").PrincipalId);
        Assert.Equal(("Ops", "changed"), (ram.UpdateRole(_root, "Ops", newDescription: "changed").RoleName, ram.UpdateRole(_root, "Ops").Description));
        Assert.Equal("two", ram.UpdateRole(_root, "ops").Description);
    }

    [Fact]
    public void CreateAccessKey_without_a_user_name_is_the_callers_own_key_and_a_role_session_must_name_a_user()
    {
        _ram.CreateUser(_root, "grace");
        _ram.CreateRole(_root, "KeyAdmin");
        var grace = KmsCallContext.ForRoot(_root.AccountId) with { Principal = _ram.UserPrincipal(_root.AccountId, "grace") };
        var session = grace with { Principal = _ram.RolePrincipal(_root.AccountId, "KeyAdmin", "s1") };
        using var rootKey = _ram.CreateAccessKey(_root);

        using (var own = _ram.CreateAccessKey(grace))
        {
            var found = _ram.FindAccessKey(own.AccessKeyId)!.Value;
            found.Secret.Dispose();
            Assert.Equal((PrincipalType.RamUser, "grace"), (found.Principal.Type, found.Principal.UserName));
            Assert.Equal("EntityNotExist.User.AccessKey", Assert.Throws<KmsException>(() => _ram.DeleteAccessKey(grace, rootKey.AccessKeyId)).Code);
            _ram.DeleteAccessKey(grace, own.AccessKeyId);
            Assert.Null(_ram.FindAccessKey(own.AccessKeyId));
        }

        var refused = Assert.Throws<KmsException>(() => _ram.CreateAccessKey(session));
        Assert.Equal("MissingParameter", refused.Code);
        Assert.Contains("UserName", refused.Message, StringComparison.Ordinal);
        Assert.Equal("MissingParameter", Assert.Throws<KmsException>(() => _ram.DeleteAccessKey(session, rootKey.AccessKeyId)).Code);
        Assert.Equal(PrincipalType.Root, _ram.FindAccessKey(rootKey.AccessKeyId)!.Value.Principal.Type);
    }
}
