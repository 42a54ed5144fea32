using System.Text;
using System.Text.Json;
using Microsoft.Data.Sqlite;
using TdeEngine.Audit;
using TdeEngine.Kms;
using TdeEngine.Kms.Api;
using TdeEngine.Kms.Identity;
using TdeEngine.Kms.KeyManagement;
using TdeEngine.Kms.RootKeys;
using TdeEngine.Ram;

namespace TdeEngine.Gateway.Tests;

/// <summary>Every call through the gateway is authorized by RAM and recorded in a verifiable audit trail.</summary>
public sealed class GatewayTests : IDisposable
{
    private const string Account = "1111222233334444";
    private readonly string _home = Path.Combine(Path.GetTempPath(), "tde-gateway-" + Guid.NewGuid().ToString("N"));
    private readonly FileRootKeyProvider _root;
    private readonly KeyManagementService _kms;
    private readonly RamService _ram;
    private readonly AuditTrail _audit;
    private readonly KmsGateway _gateway;
    private readonly KmsCallContext _rootCaller = KmsCallContext.ForRoot(Account);

    public GatewayTests()
    {
        Directory.CreateDirectory(_home);
        _root = FileRootKeyProvider.OpenOrCreate(Path.Combine(_home, "root.key"));
        _kms = KeyManagementService.Open(new KmsOptions { Home = _home, DefaultAccountId = Account }, _root);
        _ram = RamService.Open(_home, _root);
        _audit = AuditTrail.Open(_home, _root, checkpointInterval: 5);
        _gateway = new KmsGateway(_kms, _ram, _audit);
    }

    public void Dispose()
    {
        _audit.Dispose();
        _ram.Dispose();
        _kms.Dispose();
        _root.Dispose();
        SqliteConnection.ClearAllPools();
        Directory.Delete(_home, recursive: true);
    }

    private (KmsApiResponse Response, JsonElement Body) Kms(KmsCallContext caller, string action, params (string, string)[] p)
    {
        var response = _gateway.InvokeKms(caller, action, p.ToDictionary(x => x.Item1, x => x.Item2));
        return (response, JsonDocument.Parse(response.Body.ToArray()).RootElement.Clone());
    }

    private KmsCallContext User(string name, string? policy = null)
    {
        _ram.CreateUser(_rootCaller, name);
        if (policy is not null)
        {
            _ram.CreatePolicy(_rootCaller, name + "Policy", policy);
            _ram.AttachPolicy(_rootCaller, "User", name, "Custom", name + "Policy");
        }

        return new KmsCallContext(_ram.UserPrincipal(Account, name), "10.1.2.3", KmsCallContext.NewRequestId(), "test");
    }

    [Fact]
    public void A_user_without_a_policy_is_refused_with_Forbidden_RAM_and_allowed_once_one_is_attached()
    {
        var key = Kms(_rootCaller, "CreateKey").Body.GetProperty("KeyMetadata").GetProperty("KeyId").GetString()!;
        var alice = User("alice");

        var (refused, body) = Kms(alice, "GenerateDataKey", ("KeyId", key));
        Assert.Equal(403, refused.HttpStatus);
        Assert.Equal("Forbidden.RAM", body.GetProperty("Code").GetString());
        Assert.Contains("kms:GenerateDataKey", body.GetProperty("Message").GetString(), StringComparison.Ordinal);

        _ram.CreatePolicy(_rootCaller, "Crypto", """{"Version":"1","Statement":[{"Effect":"Allow","Action":["kms:GenerateDataKey","kms:Decrypt"],"Resource":"acs:kms:*:*:key/*"}]}""");
        _ram.AttachPolicy(_rootCaller, "User", "alice", "Custom", "Crypto");
        var (allowed, dataKey) = Kms(alice, "GenerateDataKey", ("KeyId", key));
        Assert.True(allowed.IsSuccess);
        Assert.True(Kms(alice, "Decrypt", ("CiphertextBlob", dataKey.GetProperty("CiphertextBlob").GetString()!)).Response.IsSuccess);
        Assert.Equal(403, Kms(alice, "ScheduleKeyDeletion", ("KeyId", key), ("PendingWindowInDays", "7")).Response.HttpStatus);
    }

    [Fact]
    public void Conditions_see_the_encryption_context_the_source_ip_and_the_key_tags()
    {
        var key = Kms(_rootCaller, "CreateKey", ("Tags", """[{"TagKey":"env","TagValue":"prod"}]""")).Body.GetProperty("KeyMetadata").GetProperty("KeyId").GetString()!;
        var bob = User("bob", """
            {"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:GenerateDataKey","Resource":"*",
              "Condition":{"StringEquals":{"kms:EncryptionContext:db":"orders","kms:tag/env":"prod"},"IpAddress":{"acs:SourceIp":"10.0.0.0/8"}}}]}
            """);

        Assert.True(Kms(bob, "GenerateDataKey", ("KeyId", key), ("EncryptionContext", """{"db":"orders"}""")).Response.IsSuccess);
        Assert.Equal(403, Kms(bob, "GenerateDataKey", ("KeyId", key), ("EncryptionContext", """{"db":"hr"}""")).Response.HttpStatus);
        Assert.Equal(403, Kms(bob with { SourceIp = "192.168.0.9" }, "GenerateDataKey", ("KeyId", key), ("EncryptionContext", """{"db":"orders"}""")).Response.HttpStatus);
        // Tags are cached with the key record; a tag write is seen by the very next call.
        _kms.UntagResource(_rootCaller, key, ["env"]);
        Assert.Equal(403, Kms(bob, "GenerateDataKey", ("KeyId", key), ("EncryptionContext", """{"db":"orders"}""")).Response.HttpStatus);
        Assert.True(Kms(_rootCaller, "TagResource", ("KeyId", key), ("Tags", """[{"TagKey":"env","TagValue":"prod"}]""")).Response.IsSuccess);
        Assert.True(Kms(bob, "GenerateDataKey", ("KeyId", key), ("EncryptionContext", """{"db":"orders"}""")).Response.IsSuccess);
    }

    [Fact]
    public void Tag_keys_that_differ_only_in_case_give_one_condition_key_every_value_so_a_Deny_on_either_holds()
    {
        // Tag keys are case-sensitive (Env and env are two tags); condition keys are not, so kms:tag/env has both values.
        var key = Kms(_rootCaller, "CreateKey", ("Tags", """[{"TagKey":"Env","TagValue":"prod"},{"TagKey":"env","TagValue":"dev"}]""")).Body
            .GetProperty("KeyMetadata").GetProperty("KeyId").GetString()!;
        var carol = User("carol", """
            {"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:GenerateDataKey","Resource":"*"},
              {"Effect":"Deny","Action":"kms:GenerateDataKey","Resource":"*","Condition":{"StringEquals":{"kms:tag/Env":"prod"}}}]}
            """);
        var dave = User("dave", """
            {"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:GenerateDataKey","Resource":"*","Condition":{"StringEquals":{"kms:tag/env":"dev"}}}]}
            """);

        Assert.Equal(2, _kms.ListResourceTags(_rootCaller, key).Count);
        Assert.Equal(403, Kms(carol, "GenerateDataKey", ("KeyId", key)).Response.HttpStatus);
        Assert.Equal(403, Kms(dave, "GenerateDataKey", ("KeyId", key)).Response.HttpStatus);
    }

    [Fact]
    public void Every_call_allowed_denied_or_failed_becomes_one_audit_event_without_secrets()
    {
        var key = Kms(_rootCaller, "CreateKey").Body.GetProperty("KeyMetadata").GetProperty("KeyId").GetString()!;
        var dataKey = Kms(_rootCaller, "GenerateDataKey", ("KeyId", key), ("EncryptionContext", """{"db":"orders"}""")).Body;
        var plaintext = dataKey.GetProperty("Plaintext").GetString()!;
        Kms(_rootCaller, "Encrypt", ("KeyId", key), ("Plaintext", Convert.ToBase64String("top secret"u8)));
        Kms(_rootCaller, "DisableKey", ("KeyId", key));
        Kms(_rootCaller, "Decrypt", ("CiphertextBlob", dataKey.GetProperty("CiphertextBlob").GetString()!), ("EncryptionContext", """{"db":"orders"}"""));
        Kms(User("carol"), "DescribeKey", ("KeyId", key));
        using (var access = _gateway.InvokeRam(_rootCaller, "CreateAccessKey", new Dictionary<string, string>()))
        {
            Assert.True(access.IsSuccess);
        }

        var events = _audit.ReadAll().ToList();
        Assert.Equal(["CreateKey", "GenerateDataKey", "Encrypt", "DisableKey", "Decrypt", "DescribeKey", "CreateAccessKey"], events.Select(e => e.EventName));
        Assert.Equal(Enumerable.Range(1, 7).Select(i => (long)i), events.Select(e => e.EventSequence));
        var generate = events[1];
        Assert.Equal(("orders-context", key), (generate.RequestParameters["EncryptionContext"].Contains("orders", StringComparison.Ordinal) ? "orders-context" : "", generate.AdditionalEventData["keyId"]));
        Assert.Equal(_kms.DescribeKey(_rootCaller, key).PrimaryKeyVersion, generate.AdditionalEventData["keyVersionId"]);
        Assert.Equal(("Rejected.Disabled", key), (events[4].ErrorCode, events[4].AdditionalEventData["keyId"]));
        Assert.Equal(("Forbidden.RAM", "ImplicitDeny", "ram-user", "carol"),
            (events[5].ErrorCode, events[5].AdditionalEventData["decision"], events[5].UserIdentity.Type, events[5].UserIdentity.UserName));
        Assert.Equal("root-account", events[0].UserIdentity.Type);

        var trail = File.ReadAllText(_audit.TrailPath);
        Assert.DoesNotContain(plaintext, trail, StringComparison.Ordinal);
        Assert.DoesNotContain(Convert.ToBase64String("top secret"u8), trail, StringComparison.Ordinal);
        Assert.DoesNotContain("AccessKeySecret", trail, StringComparison.Ordinal);
        Assert.DoesNotContain("CiphertextBlob", trail, StringComparison.Ordinal);
        Assert.True(_audit.Verify().Intact);
    }

    private List<string> FillTrail(int count)
    {
        for (var i = 0; i < count; i++)
        {
            Kms(_rootCaller, "ListKeys").Response.Dispose();
        }

        return File.ReadAllLines(_audit.TrailPath).ToList();
    }

    [Fact]
    public void Verify_names_the_first_edited_event()
    {
        var lines = FillTrail(8);
        lines[3] = lines[3].Replace("\"eventName\":\"ListKeys\"", "\"eventName\":\"ListKeyz\"", StringComparison.Ordinal);
        File.WriteAllLines(_audit.TrailPath, lines);

        var result = _audit.Verify();

        Assert.False(result.Intact);
        Assert.Equal(4, result.FirstBadSequence);
        Assert.Contains("edited", result.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("delete")]
    [InlineData("reorder")]
    [InlineData("insert")]
    public void Verify_names_where_events_were_deleted_reordered_or_inserted(string change)
    {
        var lines = FillTrail(8);
        switch (change)
        {
            case "delete":
                lines.RemoveAt(4);
                break;
            case "reorder":
                (lines[4], lines[5]) = (lines[5], lines[4]);
                break;
            default:
                lines.Insert(4, lines[2]);
                break;
        }

        File.WriteAllLines(_audit.TrailPath, lines);
        var result = _audit.Verify();

        Assert.False(result.Intact);
        Assert.Equal(change == "insert" ? 3 : change == "delete" ? 6 : 6, result.FirstBadSequence);
        Assert.Contains("deleted, reordered or inserted", result.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Cutting_the_tail_is_caught_by_a_signed_checkpoint()
    {
        var lines = FillTrail(12);   // checkpoints at 5 and 10
        File.WriteAllLines(_audit.TrailPath, lines.Take(7));

        var result = _audit.Verify();

        Assert.False(result.Intact);
        Assert.Contains("cut from the end", result.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Concurrent_callers_are_group_committed_into_one_unbroken_chain()
    {
        Parallel.For(0, 200, new ParallelOptions { MaxDegreeOfParallelism = 8 }, _ => Kms(_rootCaller, "ListKeys").Response.Dispose());

        var verification = _audit.Verify();
        Assert.True(verification.Intact, verification.Message);
        Assert.Equal(200, verification.EventsChecked);
        // One checkpoint per batch that crosses a multiple of 5: up to 40, fewer when batches are large.
        Assert.InRange(verification.CheckpointsChecked, 1, 40);
        Assert.Equal(Enumerable.Range(1, 200).Select(i => (long)i), _audit.ReadAll().Select(e => e.EventSequence));
    }

    [Fact]
    public async Task Async_appends_racing_with_dispose_all_finish_and_every_acknowledged_event_is_in_the_trail()
    {
        var home = Path.Combine(_home, "race");
        var trail = AuditTrail.Open(home, _root);
        Kms(_rootCaller, "ListKeys").Response.Dispose();
        var template = _audit.ReadAll().Single();
        var appends = Enumerable.Range(0, 4).Select(t => Task.Run(async () =>
        {
            var acknowledged = new List<string>();
            for (var i = 0; i < 500; i++)
            {
                var id = $"{t}-{i}";
                try
                {
                    await trail.AppendAsync(template with { EventId = id }).ConfigureAwait(false);
                    acknowledged.Add(id);
                }
                catch (ObjectDisposedException)
                {
                    break;
                }
            }

            return acknowledged;
        })).ToList();
        await Task.Delay(20).ConfigureAwait(true);
        trail.Dispose();

        var finished = await Task.WhenAll(appends).WaitAsync(TimeSpan.FromSeconds(30)).ConfigureAwait(true);
        using var reopened = AuditTrail.Open(home, _root);
        var written = reopened.ReadAll().Select(e => e.EventId).ToHashSet();
        Assert.Subset(written, finished.SelectMany(a => a).ToHashSet());
        Assert.True(reopened.Verify().Intact);
    }

    [Fact]
    public void A_hash_can_be_recomputed_with_standard_tools()
    {
        FillTrail(1);
        var line = File.ReadAllLines(_audit.TrailPath)[0];
        var cut = line.LastIndexOf(",\"hash\":\"", StringComparison.Ordinal);
        var expected = JsonDocument.Parse(line).RootElement.GetProperty("hash").GetString();

        var actual = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes(line[..cut] + "}")));

        Assert.Equal(expected, actual);
        Assert.Equal(new string('0', 64), JsonDocument.Parse(line).RootElement.GetProperty("previousHash").GetString());
    }

    private (KmsApiResponse Response, JsonElement Body) Ram(KmsCallContext caller, string action, params (string, string)[] p)
    {
        var response = _gateway.InvokeRam(caller, action, p.ToDictionary(x => x.Item1, x => x.Item2));
        return (response, JsonDocument.Parse(response.Body.ToArray()).RootElement.Clone());
    }

    private (KmsApiResponse Response, JsonElement Body) Sts(KmsCallContext caller, string action, params (string, string)[] p)
    {
        var response = _gateway.InvokeSts(caller, action, p.ToDictionary(x => x.Item1, x => x.Item2));
        return (response, JsonDocument.Parse(response.Body.ToArray()).RootElement.Clone());
    }

    private string NewKey(string? tags = null) =>
        (tags is null ? Kms(_rootCaller, "CreateKey") : Kms(_rootCaller, "CreateKey", ("Tags", tags))).Body.GetProperty("KeyMetadata").GetProperty("KeyId").GetString()!;

    private static string Code(JsonElement body) => body.GetProperty("Code").GetString()!;

    private KmsPrincipal OwnerOf(string accessKeyId)
    {
        var found = _ram.FindAccessKey(accessKeyId)!.Value;
        found.Secret.Dispose();
        return found.Principal;
    }

    [Fact]
    public void CreateAccessKey_and_DeleteAccessKey_without_UserName_act_on_the_callers_own_keys_never_on_the_roots()
    {
        var helpdesk = User("helpdesk", """{"Version":"1","Statement":[{"Effect":"Allow","Action":["ram:CreateAccessKey","ram:DeleteAccessKey"],"Resource":"*"}]}""");
        using var rootKey = _ram.CreateAccessKey(_rootCaller);

        var (created, body) = Ram(helpdesk, "CreateAccessKey");
        var (deleteRoot, refusal) = Ram(helpdesk, "DeleteAccessKey", ("UserAccessKeyId", rootKey.AccessKeyId));

        Assert.True(created.IsSuccess, body.ToString());
        var id = body.GetProperty("AccessKey").GetProperty("AccessKeyId").GetString()!;
        Assert.Equal((PrincipalType.RamUser, "helpdesk"), (OwnerOf(id).Type, OwnerOf(id).UserName));
        Assert.Equal((404, "EntityNotExist.User.AccessKey"), (deleteRoot.HttpStatus, Code(refusal)));
        Assert.Equal(PrincipalType.Root, OwnerOf(rootKey.AccessKeyId).Type);
        Assert.True(Ram(helpdesk, "DeleteAccessKey", ("UserAccessKeyId", id)).Response.IsSuccess);
        Assert.Null(_ram.FindAccessKey(id));
        var events = _audit.ReadAll().Where(e => e.EventName.EndsWith("AccessKey", StringComparison.Ordinal)).ToList();
        Assert.All(events, e => Assert.Equal($"acs:ram::{Account}:user/helpdesk", e.AdditionalEventData["resource"]));
    }

    // An empty UserName is read as no UserName by the action (the caller's own key), so it must be
    // authorized as the caller's user ARN too, not as "user/" (which a Deny on the user misses).
    [Fact]
    public void An_empty_UserName_is_authorized_as_the_caller_it_acts_for()
    {
        var alice = User("alice", """{"Version":"1","Statement":[{"Effect":"Allow","Action":"ram:CreateAccessKey","Resource":"acs:ram:*:*:user/*"},{"Effect":"Deny","Action":"ram:CreateAccessKey","Resource":"acs:ram:*:*:user/alice"}]}""");

        var (absent, absentBody) = Ram(alice, "CreateAccessKey");
        var (empty, emptyBody) = Ram(alice, "CreateAccessKey", ("UserName", ""));

        Assert.Equal((403, "Forbidden.RAM"), (absent.HttpStatus, Code(absentBody)));
        Assert.Equal((403, "Forbidden.RAM"), (empty.HttpStatus, Code(emptyBody)));
        Assert.All(_audit.ReadAll().Where(e => e.EventName == "CreateAccessKey"),
            e => Assert.Equal($"acs:ram::{Account}:user/alice", e.AdditionalEventData["resource"]));
    }

    [Fact]
    public void A_role_session_must_name_the_user_whose_access_key_it_creates_or_deletes()
    {
        _ram.CreateUser(_rootCaller, "svc");
        _ram.CreateRole(_rootCaller, "KeyAdmin");
        _ram.CreatePolicy(_rootCaller, "RamAll", """{"Version":"1","Statement":[{"Effect":"Allow","Action":"ram:*","Resource":"*"}]}""");
        _ram.AttachPolicy(_rootCaller, "Role", "KeyAdmin", "Custom", "RamAll");
        var session = new KmsCallContext(_ram.RolePrincipal(Account, "KeyAdmin", "s1"), "10.1.2.3", KmsCallContext.NewRequestId());
        using var rootKey = _ram.CreateAccessKey(_rootCaller);

        var (create, createBody) = Ram(session, "CreateAccessKey");
        var (delete, deleteBody) = Ram(session, "DeleteAccessKey", ("UserAccessKeyId", rootKey.AccessKeyId));
        var (forSvc, svcBody) = Ram(session, "CreateAccessKey", ("UserName", "svc"));

        Assert.Equal((400, "MissingParameter"), (create.HttpStatus, Code(createBody)));
        Assert.Contains("UserName", createBody.GetProperty("Message").GetString(), StringComparison.Ordinal);
        Assert.Equal((400, "MissingParameter"), (delete.HttpStatus, Code(deleteBody)));
        Assert.Equal(PrincipalType.Root, OwnerOf(rootKey.AccessKeyId).Type);
        Assert.True(forSvc.IsSuccess, svcBody.ToString());
        Assert.Equal("svc", OwnerOf(svcBody.GetProperty("AccessKey").GetProperty("AccessKeyId").GetString()!).UserName);
        Assert.Equal("MissingParameter", _audit.ReadAll().First(e => e.EventName == "CreateAccessKey").ErrorCode);
    }

    [Fact]
    public void RAM_actions_are_authorized_on_the_user_role_or_policy_they_touch()
    {
        var delegated = User("delegated", $$"""
            {"Version":"1","Statement":[
              {"Effect":"Allow","Action":["ram:CreateUser","ram:CreateAccessKey"],"Resource":"acs:ram:*:*:user/svc-*"},
              {"Effect":"Allow","Action":"ram:AttachPolicyToUser","Resource":["acs:ram:*:*:user/svc-*","acs:ram:*:{{Account}}:policy/AliyunKMSReadOnlyAccess"]},
              {"Effect":"Allow","Action":"ram:CreateRole","Resource":"acs:ram::{{Account}}:role/app-*"}]}
            """);
        _ram.CreateUser(_rootCaller, "boss");

        Assert.True(Ram(delegated, "CreateUser", ("UserName", "svc-a")).Response.IsSuccess);
        Assert.Equal(403, Ram(delegated, "CreateUser", ("UserName", "mallory")).Response.HttpStatus);
        Assert.True(Ram(delegated, "CreateAccessKey", ("UserName", "svc-a")).Response.IsSuccess);
        var (bossKey, refusal) = Ram(delegated, "CreateAccessKey", ("UserName", "boss"));
        Assert.Equal((403, "Forbidden.RAM"), (bossKey.HttpStatus, Code(refusal)));
        Assert.Contains($"acs:ram::{Account}:user/boss", refusal.GetProperty("Message").GetString(), StringComparison.Ordinal);
        Assert.True(Ram(delegated, "AttachPolicyToUser", ("UserName", "svc-a"), ("PolicyType", "System"), ("PolicyName", "AliyunKMSReadOnlyAccess")).Response.IsSuccess);
        Assert.Equal(403, Ram(delegated, "AttachPolicyToUser", ("UserName", "svc-a"), ("PolicyType", "System"), ("PolicyName", "AliyunKMSFullAccess")).Response.HttpStatus);
        Assert.Equal(403, Ram(delegated, "AttachPolicyToUser", ("UserName", "boss"), ("PolicyType", "System"), ("PolicyName", "AliyunKMSReadOnlyAccess")).Response.HttpStatus);
        Assert.True(Ram(delegated, "CreateRole", ("RoleName", "app-orders")).Response.IsSuccess);
        Assert.Equal(403, Ram(delegated, "CreateRole", ("RoleName", "admin")).Response.HttpStatus);

        // Another spelling of a name is authorized as the name itself; a "*" grant keeps working.
        var admin = User("admin", $$"""
            {"Version":"1","Statement":[{"Effect":"Allow","Action":"ram:*","Resource":"*"},
              {"Effect":"Deny","Action":"ram:CreateAccessKey","Resource":"acs:ram::{{Account}}:user/boss"}]}
            """);
        Assert.Equal(403, Ram(admin, "CreateAccessKey", ("UserName", "BOSS")).Response.HttpStatus);
        Assert.True(Ram(admin, "CreateAccessKey", ("UserName", "svc-a")).Response.IsSuccess);
        Assert.True(Ram(admin, "CreatePolicy", ("PolicyName", "Any"), ("PolicyDocument", """{"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:List*","Resource":"*"}]}""")).Response.IsSuccess);
    }

    [Fact]
    public void ListPolicies_is_authorized_on_the_accounts_policies_as_Alibaba_names_them()
    {
        // Alibaba's RAM authorization table: ListPolicies on acs:ram:*:<account>:policy/*.
        var lister = User("lister", $$"""{"Version":"1","Statement":[{"Effect":"Allow","Action":"ram:ListPolicies","Resource":"acs:ram:*:{{Account}}:policy/*"}]}""");
        var elsewhere = User("elsewhere", """{"Version":"1","Statement":[{"Effect":"Allow","Action":"ram:ListPolicies","Resource":"acs:ram:*:9999:policy/*"}]}""");

        Assert.True(Ram(lister, "ListPolicies").Response.IsSuccess);
        Assert.Equal(403, Ram(elsewhere, "ListPolicies").Response.HttpStatus);
    }

    [Fact]
    public void A_deny_on_assuming_a_role_holds_whatever_the_case_of_the_role_name_in_RoleArn()
    {
        _ram.CreateRole(_rootCaller, "Admin", $$$"""{"Version":"1","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Principal":{"RAM":["acs:ram::{{{Account}}}:root"]}}]}""");
        var dev = User("dev", $$"""{"Version":"1","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"*"},{"Effect":"Deny","Action":"sts:AssumeRole","Resource":"acs:ram::{{Account}}:role/admin"}]}""");

        foreach (var spelling in new[] { "admin", "ADMIN", "Admin", "aDmIn" })
        {
            var (response, body) = Sts(dev, "AssumeRole", ("RoleArn", $"acs:ram::{Account}:role/{spelling}"), ("RoleSessionName", "s1"));
            Assert.Equal((403, "Forbidden.RAM"), (response.HttpStatus, Code(body)));
        }

        Assert.All(_audit.ReadAll(), e => Assert.Equal($"acs:ram::{Account}:role/admin", e.AdditionalEventData["resource"]));
    }

    [Fact]
    public void A_refusal_never_names_the_key_behind_an_alias_however_the_alias_is_spelled()
    {
        var victim = NewKey();
        Kms(_rootCaller, "CreateAlias", ("AliasName", "alias/prod-db"), ("KeyId", victim));
        var mallory = User("mallory", """{"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"acs:kms:*:*:alias/*"}]}""");
        var scope = $"acs:kms:{_kms.RegionId}:{Account}";

        // An ARN whose key/ part holds an alias (key/alias/prod-db) resolves through the alias too.
        foreach (var spelling in new[] { "alias/prod-db", $"{scope}:alias/prod-db", $"{scope}:key/alias/prod-db" })
        {
            foreach (var (action, parameter) in new[] { ("DescribeKey", "KeyId"), ("Encrypt", "KeyId"), ("GenerateDataKey", "KeyId"), ("ListResourceTags", "KeyId") })
            {
                var (response, body) = Kms(mallory, action, (parameter, spelling), ("Plaintext", "aGk="));
                Assert.Equal(403, response.HttpStatus);
                Assert.DoesNotContain(victim, body.GetProperty("Message").GetString()!, StringComparison.Ordinal);
            }
        }
    }

    [Fact]
    public void A_refused_call_records_the_refused_resource_and_stays_under_its_first_key()
    {
        var source = NewKey();
        var destination = NewKey();
        var blob = Kms(_rootCaller, "Encrypt", ("KeyId", source), ("Plaintext", Convert.ToBase64String("s3cr3t"u8.ToArray()))).Body
            .GetProperty("CiphertextBlob").GetString()!;
        var app = User("reencrypter", $$"""{"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:ReEncrypt","Resource":"acs:kms:*:*:key/{{source}}"}]}""");

        var (refused, _) = Kms(app, "ReEncrypt", ("CiphertextBlob", blob), ("DestinationKeyId", destination));

        Assert.Equal(403, refused.HttpStatus);
        var recorded = _audit.ReadAll().Last();
        Assert.EndsWith($"key/{destination}", recorded.AdditionalEventData["resource"], StringComparison.Ordinal);   // what was refused
        Assert.Equal(source, recorded.AdditionalEventData["keyId"]);   // found by a lookup of the source key
    }

    [Fact]
    public void Alias_changes_need_permission_on_the_alias_and_on_every_key_it_points_at()
    {
        var victim = NewKey();
        var mine = NewKey();
        Kms(_rootCaller, "CreateAlias", ("AliasName", "alias/prod-db"), ("KeyId", victim));
        var mallory = User("mallory", $$"""{"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":["acs:kms:*:*:key/{{mine}}","acs:kms:*:*:alias/*"]}]}""");
        var keysOnly = User("keysonly", """{"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"acs:kms:*:*:key/*"}]}""");

        var (hijack, hijackBody) = Kms(mallory, "UpdateAlias", ("AliasName", "alias/prod-db"), ("KeyId", mine));
        Assert.Equal((403, "Forbidden.RAM"), (hijack.HttpStatus, Code(hijackBody)));

        // The refusal names the alias, not the key behind it: mallory may not learn which key that is.
        // The audit event, for the account's administrators, records the key.
        var message = hijackBody.GetProperty("Message").GetString()!;
        Assert.DoesNotContain(victim, message, StringComparison.Ordinal);
        Assert.Contains(":alias/prod-db points to now", message, StringComparison.Ordinal);
        Assert.EndsWith($"key/{victim}", _audit.ReadAll().Last().AdditionalEventData["resource"], StringComparison.Ordinal);
        var (describe, describeBody) = Kms(mallory, "DescribeKey", ("KeyId", "alias/prod-db"));
        Assert.Equal(403, describe.HttpStatus);
        Assert.DoesNotContain(victim, describeBody.GetProperty("Message").GetString()!, StringComparison.Ordinal);
        Assert.Contains(":alias/prod-db points to", describeBody.GetProperty("Message").GetString()!, StringComparison.Ordinal);
        var (byId, byIdBody) = Kms(mallory, "DescribeKey", ("KeyId", victim));   // named by id: named back
        Assert.Equal(403, byId.HttpStatus);
        Assert.Contains($"key/{victim}", byIdBody.GetProperty("Message").GetString(), StringComparison.Ordinal);
        Assert.Equal(403, Kms(mallory, "DeleteAlias", ("AliasName", "alias/prod-db")).Response.HttpStatus);
        Assert.Equal(victim, _kms.DescribeKey(_rootCaller, "alias/prod-db").KeyId);

        Assert.True(Kms(mallory, "CreateAlias", ("AliasName", "alias/mine"), ("KeyId", mine)).Response.IsSuccess);
        Assert.Equal(403, Kms(mallory, "UpdateAlias", ("AliasName", "alias/mine"), ("KeyId", victim)).Response.HttpStatus);
        Assert.Equal(403, Kms(mallory, "CreateAlias", ("AliasName", "alias/other"), ("KeyId", victim)).Response.HttpStatus);

        var (noAlias, noAliasBody) = Kms(keysOnly, "CreateAlias", ("AliasName", "alias/keys"), ("KeyId", mine));
        Assert.Equal(403, noAlias.HttpStatus);
        Assert.Contains($":alias/keys", noAliasBody.GetProperty("Message").GetString(), StringComparison.Ordinal);
        Assert.Equal(403, Kms(keysOnly, "UpdateAlias", ("AliasName", "alias/mine"), ("KeyId", victim)).Response.HttpStatus);
        Assert.Equal(403, Kms(keysOnly, "DeleteAlias", ("AliasName", "alias/mine")).Response.HttpStatus);

        Assert.True(Kms(mallory, "DeleteAlias", ("AliasName", "alias/mine")).Response.IsSuccess);
    }

    [Fact]
    public void SetDeletionProtection_is_authorized_on_the_key_with_its_tags_and_refuses_an_alias_in_the_ARN()
    {
        var key = NewKey("""[{"TagKey":"env","TagValue":"prod"}]""");
        var arn = _kms.DescribeKey(_rootCaller, key).Arn;
        Kms(_rootCaller, "CreateAlias", ("AliasName", "alias/payroll"), ("KeyId", key));
        Assert.True(Kms(_rootCaller, "SetDeletionProtection", ("ProtectedResourceArn", arn), ("EnableDeletionProtection", "true")).Response.IsSuccess);
        var byTag = User("bytag", """{"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"},{"Effect":"Deny","Action":"kms:SetDeletionProtection","Resource":"*","Condition":{"StringEquals":{"kms:tag/env":"prod"}}}]}""");
        var byArn = User("byarn", $$"""{"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"},{"Effect":"Deny","Action":"kms:SetDeletionProtection","Resource":"{{arn}}"}]}""");
        var prefix = arn[..(arn.IndexOf(":key/", StringComparison.Ordinal) + 5)];

        var (tagged, taggedBody) = Kms(byTag, "SetDeletionProtection", ("ProtectedResourceArn", arn), ("EnableDeletionProtection", "false"));
        Assert.Equal((403, "Forbidden.RAM"), (tagged.HttpStatus, Code(taggedBody)));
        foreach (var sneaky in new[] { prefix + "alias/payroll", prefix + arn[..^key.Length] + "alias/payroll", prefix + arn })
        {
            var (response, body) = Kms(byArn, "SetDeletionProtection", ("ProtectedResourceArn", sneaky), ("EnableDeletionProtection", "false"));
            Assert.Equal((400, "InvalidParameter"), (response.HttpStatus, Code(body)));
            Assert.Equal("InvalidParameter", Code(Kms(_rootCaller, "SetDeletionProtection", ("ProtectedResourceArn", sneaky), ("EnableDeletionProtection", "false")).Body));
        }

        Assert.Equal(403, Kms(byArn, "SetDeletionProtection", ("ProtectedResourceArn", arn), ("EnableDeletionProtection", "false")).Response.HttpStatus);
        Assert.True(_kms.DescribeKey(_rootCaller, key).DeletionProtection);
        Assert.True(Kms(User("free", """{"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}"""),
            "SetDeletionProtection", ("ProtectedResourceArn", arn), ("EnableDeletionProtection", "false")).Response.IsSuccess);
        Assert.False(_kms.DescribeKey(_rootCaller, key).DeletionProtection);
    }

    [Fact]
    public void Encryption_context_keys_differing_only_in_case_are_all_checked_by_conditions()
    {
        var key = NewKey();
        var onlyOrders = User("orders", """{"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:GenerateDataKey","Resource":"*","Condition":{"StringEquals":{"kms:EncryptionContext:Tenant":"orders"}}}]}""");
        var notPayroll = User("notpayroll", """{"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:GenerateDataKey","Resource":"*"},{"Effect":"Deny","Action":"kms:GenerateDataKey","Resource":"*","Condition":{"StringEquals":{"kms:EncryptionContext:tenant":"payroll"}}}]}""");

        Assert.True(Kms(onlyOrders, "GenerateDataKey", ("KeyId", key), ("EncryptionContext", """{"Tenant":"orders"}""")).Response.IsSuccess);
        Assert.True(Kms(onlyOrders, "GenerateDataKey", ("KeyId", key), ("EncryptionContext", """{"Tenant":"orders","TENANT":"orders"}""")).Response.IsSuccess);
        Assert.Equal(403, Kms(onlyOrders, "GenerateDataKey", ("KeyId", key), ("EncryptionContext", """{"Tenant":"payroll","tenant":"orders"}""")).Response.HttpStatus);
        Assert.Equal(403, Kms(onlyOrders, "GenerateDataKey", ("KeyId", key), ("EncryptionContext", """{"tenant":"orders","Tenant":"payroll"}""")).Response.HttpStatus);
        Assert.Equal(403, Kms(notPayroll, "GenerateDataKey", ("KeyId", key), ("EncryptionContext", """{"Tenant":"orders","tenant":"payroll"}""")).Response.HttpStatus);
        Assert.Equal(403, Kms(notPayroll, "GenerateDataKey", ("KeyId", key), ("EncryptionContext", """{"tenant":"payroll","Tenant":"orders"}""")).Response.HttpStatus);
        Assert.True(Kms(notPayroll, "GenerateDataKey", ("KeyId", key), ("EncryptionContext", """{"Tenant":"orders","tenant":"hr"}""")).Response.IsSuccess);
    }

    [Fact]
    public void In_process_calls_count_as_secure_transport()
    {
        var key = NewKey();
        var tlsOnly = User("tlsonly", """{"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:DescribeKey","Resource":"*","Condition":{"Bool":{"acs:SecureTransport":"true"}}}]}""");

        Assert.True(Kms(tlsOnly, "DescribeKey", ("KeyId", key)).Response.IsSuccess);
    }
}
