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

    // A clock that fails when armed: the server's start reads it first when it seeds its replay
    // guard, after it has taken the home lock.
    private sealed class ArmedClock : TimeProvider
    {
        public bool Armed { get; set; }

        public override DateTimeOffset GetUtcNow() =>
            Armed ? throw new InvalidOperationException("the clock failed (test)") : base.GetUtcNow();
    }

    private static AuditEvent ServerEvent(string region, int i) => new()
    {
        EventId = Guid.NewGuid().ToString(), EventTime = DateTimeOffset.UtcNow, EventName = "ListKeys", EventSource = "kms.aliyuncs.com",
        ServiceName = "Kms", ApiVersion = "2016-01-20", AcsRegion = region, RequestId = Guid.NewGuid().ToString(),
        SourceIpAddress = "127.0.0.1", UserIdentity = new AuditIdentity("ram-user", "1", "2", "u", "LTAIx"),
        RequestParameters = new Dictionary<string, string>(),
        AdditionalEventData = new Dictionary<string, string> { ["signatureNonce"] = "n" + i },
    };

    [Fact]
    public async Task A_build_that_fails_while_reading_the_nonces_releases_the_home_lock()
    {
        var clock = new ArmedClock();
        using var root = FileRootKeyProvider.OpenOrCreate(Path.Combine(_home, "root.key"));
        using var kms = KeyManagementService.Open(new KmsOptions { Home = _home, TimeProvider = clock }, root);
        using var ram = RamService.Open(_home, root);
        using var trail = AuditTrail.Open(_home, root);

        clock.Armed = true;
        var failed = Assert.Throws<InvalidOperationException>(() => KmsServer.Build(new KmsServerOptions { Port = 0 }, kms, ram, trail));
        Assert.Equal("the clock failed (test)", failed.Message);

        // The same process starts its server once the fault is gone: the failed build left no lock behind.
        clock.Armed = false;
        await using var app = KmsServer.Build(new KmsServerOptions { Port = 0 }, kms, ram, trail);
    }

    [Fact]
    public async Task A_damaged_line_at_a_segment_boundary_does_not_stop_the_server_or_hide_other_nonces()
    {
        using var root = FileRootKeyProvider.OpenOrCreate(Path.Combine(_home, "root.key"));
        using var kms = KeyManagementService.Open(new KmsOptions { Home = _home }, root);
        using var ram = RamService.Open(_home, root);
        using (var sealing = AuditTrail.Open(_home, root, segmentBytes: 1))
        {
            for (var i = 0; i < 3; i++)
            {
                sealing.Append(ServerEvent(kms.RegionId, i));
            }
        }

        var audit = Path.Combine(_home, "audit");
        var segments = Directory.GetFiles(audit, "trail-*.jsonl").Order(StringComparer.Ordinal).ToList();
        Assert.True(segments.Count >= 2, string.Join(", ", segments));
        File.WriteAllText(segments[0], "damaged\n");   // the first event's segment: its boundary lines do not parse
        using var trail = AuditTrail.Open(_home, root);

        Assert.False(trail.Verify().Intact);   // verify names the damage
        Assert.Equal(2, new ReplayGuard(TimeProvider.System).SeedFrom(trail));   // n1 and n2 are still known
        await using var app = KmsServer.Build(new KmsServerOptions { Port = 0 }, kms, ram, trail);   // and the server starts
    }
}
