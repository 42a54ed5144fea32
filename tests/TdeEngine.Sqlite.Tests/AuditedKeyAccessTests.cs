using Microsoft.Data.Sqlite;
using TdeEngine.Audit;
using TdeEngine.Gateway;
using TdeEngine.Kms.Identity;
using TdeEngine.Kms.RootKeys;
using TdeEngine.Ram;
using TdeEngine.Storage.Errors;

namespace TdeEngine.Sqlite.Tests;

/// <summary>
/// Databases registered over the gateway: the storage engine's GenerateDataKey and Decrypt are
/// authorized by RAM as the given caller and land in the audit trail, like any other KMS call.
/// </summary>
public sealed class AuditedKeyAccessTests : IDisposable
{
    private readonly DatabaseFolder _dir = new();
    private readonly string _home = Path.Combine(Path.GetTempPath(), "tde-audited-" + Guid.NewGuid().ToString("N"));
    private readonly FileRootKeyProvider _root;
    private readonly RamService _ram;
    private readonly AuditTrail _audit;
    private readonly KmsGateway _gateway;

    public AuditedKeyAccessTests()
    {
        Directory.CreateDirectory(_home);
        _root = FileRootKeyProvider.OpenOrCreate(Path.Combine(_home, "root.key"));
        _ram = RamService.Open(_home, _root);
        _audit = AuditTrail.Open(_home, _root);
        _gateway = new KmsGateway(TdeTestEnvironment.Kms, _ram, _audit);
    }

    public void Dispose()
    {
        TdeTestEnvironment.EnsureRegistered();
        _audit.Dispose();
        _ram.Dispose();
        _root.Dispose();
        _dir.Dispose();
        SqliteConnection.ClearAllPools();
        Directory.Delete(_home, recursive: true);
    }

    [Fact]
    public void A_service_role_needs_a_policy_and_every_DEK_call_is_audited_without_the_key()
    {
        var root = TdeTestEnvironment.Caller;
        var account = root.AccountId;
        var key = TdeTestEnvironment.Kms.CreateKey(root, new() { Description = "audited databases" }).KeyId;
        _ram.CreateUser(root, "rds-service");
        var service = new KmsCallContext(_ram.UserPrincipal(account, "rds-service"), "127.0.0.1", "", "rds-agent");
        TdeSqlite.Register(_gateway, () => service with { RequestId = KmsCallContext.NewRequestId() },
            new Storage.TdeStorageOptions { TimeProvider = TdeTestEnvironment.Clock, DekCacheTtl = TimeSpan.Zero });

        // No policy: the database cannot be created, and the refusal names RAM.
        using (var refused = new SqliteConnection($"Data Source=file:{_dir.File("orders.db")}?vfs=tde&kms_key={key};Pooling=False"))
        {
            var e = Assert.Throws<TdeStorageException>(() => TdeSqlite.Explain(() =>
            {
                refused.Open();
                return refused.Exec("CREATE TABLE t(x)");
            }));
            Assert.Equal(TdeStorageException.Codes.KeyUnavailable, e.Code);
            Assert.Contains("Forbidden.RAM", e.Message, StringComparison.Ordinal);
        }

        _ram.CreatePolicy(root, "RdsTde", $$"""
            {"Version":"1","Statement":[{"Effect":"Allow","Action":["kms:GenerateDataKey","kms:Decrypt"],"Resource":"acs:kms:*:{{account}}:key/*"}]}
            """);
        _ram.AttachPolicy(root, "User", "rds-service", "Custom", "RdsTde");
        using (var db = _dir.OpenTde("orders.db", $"kms_key={key}"))
        {
            db.Exec("CREATE TABLE t(x); INSERT INTO t VALUES ('row one');");
        }

        using (var reopened = _dir.OpenTde("orders.db"))
        {
            Assert.Equal("row one", reopened.Scalar<string>("SELECT x FROM t"));
        }

        var events = _audit.ReadAll().ToList();
        var names = events.Select(e => (e.EventName, e.ErrorCode)).ToList();
        Assert.Contains(("GenerateDataKey", "Forbidden.RAM"), names);
        Assert.Contains(("GenerateDataKey", (string?)null), names);
        Assert.Contains(("Decrypt", (string?)null), names);
        Assert.All(events, e => Assert.Equal(("ram-user", "rds-service", "rds-agent"), (e.UserIdentity.Type, e.UserIdentity.UserName, e.UserAgent)));
        var generated = events.First(e => e is { EventName: "GenerateDataKey", ErrorCode: null });
        Assert.Equal(key, generated.AdditionalEventData["keyId"]);
        Assert.StartsWith("{\"tde-db\":", generated.RequestParameters["EncryptionContext"], StringComparison.Ordinal);   // the database id
        Assert.True(_audit.Verify().Intact);

        // The trail holds no data key: nothing a Base64 DEK could hide in besides the known fields.
        var trail = File.ReadAllText(_audit.TrailPath);
        Assert.DoesNotContain("Plaintext", trail, StringComparison.Ordinal);
        Assert.DoesNotContain("CiphertextBlob", trail, StringComparison.Ordinal);
    }
}
