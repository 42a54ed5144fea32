using TdeEngine.Audit;
using TdeEngine.Kms.RootKeys;

namespace TdeEngine.Gateway.Tests;

/// <summary>
/// The trail file is shared: a server and CLI commands append to it at once, each through its own
/// <see cref="AuditTrail"/> (kept open between batches), and operators may move it aside.
/// </summary>
public sealed class AuditTrailFileTests : IDisposable
{
    private readonly string _home = Path.Combine(Path.GetTempPath(), "tde-trail-" + Guid.NewGuid().ToString("N"));
    private readonly FileRootKeyProvider _root;

    public AuditTrailFileTests()
    {
        Directory.CreateDirectory(_home);
        _root = FileRootKeyProvider.OpenOrCreate(Path.Combine(_home, "root.key"));
    }

    public void Dispose()
    {
        _root.Dispose();
        Directory.Delete(_home, recursive: true);
    }

    private static AuditEvent Event(string name) => new()
    {
        EventId = Guid.NewGuid().ToString(),
        EventTime = DateTimeOffset.UtcNow,
        EventName = name,
        EventSource = "kms.aliyuncs.com",
        ServiceName = "Kms",
        ApiVersion = "2016-01-20",
        AcsRegion = "cn-hangzhou",
        RequestId = Guid.NewGuid().ToString(),
        SourceIpAddress = "127.0.0.1",
        UserIdentity = new AuditIdentity("root-account", "1", "1", "root"),
        RequestParameters = new Dictionary<string, string> { ["KeyId"] = "key-" + name },
    };

    [Fact]
    public async Task Two_trails_on_one_file_interleave_into_one_unbroken_chain()
    {
        using var server = AuditTrail.Open(_home, _root, checkpointInterval: 7);
        using var cli = AuditTrail.Open(_home, _root, checkpointInterval: 7);

        // Alternating single appends: each trail must see the other's events at the end of the file.
        for (var i = 0; i < 10; i++)
        {
            Assert.Equal(2 * i + 1, server.Append(Event("s" + i)).EventSequence);
            Assert.Equal(2 * i + 2, cli.Append(Event("c" + i)).EventSequence);
        }

        // Then both at once, many callers each.
        var appends = Enumerable.Range(0, 200).Select(i => (i % 2 == 0 ? server : cli).AppendAsync(Event("p" + i))).ToArray();
        var written = await Task.WhenAll(appends);

        var sequences = written.Select(e => e.EventSequence).Order().ToArray();
        Assert.Equal(Enumerable.Range(21, 200).Select(i => (long)i), sequences);
        var verification = server.Verify();
        Assert.True(verification.Intact, verification.Message);
        Assert.Equal(220, verification.EventsChecked);
        Assert.Equal(220, File.ReadAllLines(server.TrailPath).Length);
    }

    [Fact]
    public void A_trail_moved_aside_is_left_as_it_was_and_a_new_one_is_started()
    {
        using var trail = AuditTrail.Open(_home, _root, checkpointInterval: 0);
        trail.Append(Event("one"));
        trail.Append(Event("two"));
        var archived = trail.TrailPath + ".1";
        File.Move(trail.TrailPath, archived);
        var before = File.ReadAllBytes(archived);

        var next = trail.Append(Event("three"));

        Assert.Equal(before, File.ReadAllBytes(archived));
        Assert.Equal(1, next.EventSequence);
        Assert.Equal(AuditJsonGenesis, next.PreviousHash);
        Assert.Single(File.ReadAllLines(trail.TrailPath));
        Assert.Contains("\"eventName\":\"three\"", File.ReadAllText(trail.TrailPath), StringComparison.Ordinal);
    }

    [Fact]
    public void Verify_reports_a_trail_moved_aside_once_checkpoints_were_signed()
    {
        using var trail = AuditTrail.Open(_home, _root, checkpointInterval: 2);
        for (var i = 0; i < 4; i++)
        {
            trail.Append(Event("e" + i));   // checkpoints at 2 and 4
        }

        File.Move(trail.TrailPath, trail.TrailPath + ".1");
        trail.Append(Event("fresh"));

        var result = trail.Verify();
        Assert.False(result.Intact);
        Assert.Equal(2, result.FirstBadSequence);
    }

    [Fact]
    public void A_trail_cut_short_by_hand_is_continued_from_its_new_last_event()
    {
        using var trail = AuditTrail.Open(_home, _root, checkpointInterval: 0);
        for (var i = 0; i < 5; i++)
        {
            trail.Append(Event("e" + i));
        }

        var lines = File.ReadAllLines(trail.TrailPath);
        File.WriteAllLines(trail.TrailPath, lines.Take(3));

        var next = trail.Append(Event("after"));

        // The open handle sees the shorter file: the chain goes on from event 3, not from the cached 5.
        Assert.Equal(4, next.EventSequence);
        Assert.True(trail.Verify().Intact);
    }

    private const string AuditJsonGenesis = "0000000000000000000000000000000000000000000000000000000000000000";
}
