using Microsoft.Data.Sqlite;
using TdeEngine.Audit;
using TdeEngine.Kms;
using TdeEngine.Kms.Identity;
using TdeEngine.Kms.KeyManagement;
using TdeEngine.Kms.RootKeys;
using TdeEngine.Ram;

namespace TdeEngine.Server.Tests;

public sealed class ServerHomeLockTests : IDisposable
{
    private readonly string _home = Path.Combine(Path.GetTempPath(), "tde-lock-" + Guid.NewGuid().ToString("N"));

    public ServerHomeLockTests() => Directory.CreateDirectory(_home);

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        Directory.Delete(_home, recursive: true);
    }

    [Fact]
    public async Task A_build_that_fails_while_reading_the_nonces_releases_the_home_lock()
    {
        using var root = FileRootKeyProvider.OpenOrCreate(Path.Combine(_home, "root.key"));
        using var kms = KeyManagementService.Open(new KmsOptions { Home = _home }, root);
        using var ram = RamService.Open(_home, root);
        using (var sealing = AuditTrail.Open(_home, root, segmentBytes: 1))
        {
            for (var i = 0; i < 3; i++)
            {
                sealing.Append(new AuditEvent
                {
                    EventId = Guid.NewGuid().ToString(), EventTime = DateTimeOffset.UtcNow, EventName = "ListKeys", EventSource = "kms.aliyuncs.com",
                    ServiceName = "Kms", ApiVersion = "2016-01-20", AcsRegion = kms.RegionId, RequestId = Guid.NewGuid().ToString(),
                    SourceIpAddress = "127.0.0.1", UserIdentity = new AuditIdentity("ram-user", "1", "2", "u", "LTAIx"),
                    RequestParameters = new Dictionary<string, string>(),
                    AdditionalEventData = new Dictionary<string, string> { ["signatureNonce"] = "n" + i },
                });
            }
        }

        var audit = Path.Combine(_home, "audit");
        var sealedSegment = Directory.GetFiles(audit, "trail-*.jsonl").Where(p => Path.GetFileName(p) != "trail.jsonl").Order(StringComparer.Ordinal).First();
        var original = File.ReadAllBytes(sealedSegment);
        File.WriteAllText(sealedSegment, "damaged\n");
        using var trail = AuditTrail.Open(_home, root);
        Assert.ThrowsAny<Exception>(() => KmsServer.Build(new KmsServerOptions { Port = 0 }, kms, ram, trail));

        // Repaired, the same process starts its server: the failed build left no lock behind.
        File.WriteAllBytes(sealedSegment, original);
        await using var app = KmsServer.Build(new KmsServerOptions { Port = 0 }, kms, ram, trail);
    }
}
