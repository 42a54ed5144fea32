using TdeEngine.Audit;
using TdeEngine.Kms.RootKeys;
using TdeEngine.Tests.Shared;

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

    private static AuditEvent Event(string name) => RootAuditEvent.Create(name, "key-" + name, DateTimeOffset.UtcNow);

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

    // Another process seals the file this trail has open, and the new trail.jsonl happens to have the
    // same length (here: a copy). The open handle now names the sealed file; writing through it
    // would append to a sealed segment. The trail must notice by identity, not by length.
    [Fact]
    public void A_trail_replaced_by_a_file_of_the_same_length_is_reopened_not_written_through_the_old_handle()
    {
        using var trail = AuditTrail.Open(_home, _root, checkpointInterval: 0);
        trail.Append(Event("one"));
        trail.Append(Event("two"));
        var sealedAside = trail.TrailPath + ".sealed";
        File.Move(trail.TrailPath, sealedAside);
        File.Copy(sealedAside, trail.TrailPath);
        var before = File.ReadAllBytes(sealedAside);

        var next = trail.Append(Event("three"));

        Assert.Equal(before, File.ReadAllBytes(sealedAside));
        Assert.Equal(3, next.EventSequence);
        Assert.Equal(3, File.ReadAllLines(trail.TrailPath).Length);
        Assert.Contains("\"eventName\":\"three\"", File.ReadAllText(trail.TrailPath), StringComparison.Ordinal);
    }

    // A prune that would remove every sealed segment while trail.jsonl holds no event keeps the
    // newest one: it holds the end of the chain the next events continue.
    [Fact]
    public void Events_appended_after_pruning_every_old_segment_continue_the_chain_and_are_kept()
    {
        using var trail = AuditTrail.Open(_home, _root, checkpointInterval: 0, segmentBytes: 1400, checkpointPeriod: TimeSpan.Zero);
        var n = 0;
        do
        {
            trail.Append(OldEvent("old" + n++, DateTimeOffset.UtcNow.AddDays(-2)));
        }
        while (File.Exists(trail.TrailPath));

        trail.Prune(DateTimeOffset.UtcNow.AddDays(-1));
        var a = trail.Append(Event("new-1"));
        var b = trail.Append(Event("new-2"));
        trail.Prune(DateTimeOffset.UtcNow.AddDays(-3));
        var verification = trail.Verify();

        Assert.Equal(n + 1, a.EventSequence);
        Assert.Equal(n + 2, b.EventSequence);
        Assert.True(verification.Intact, verification.Message);
        Assert.Equal(["new-1", "new-2"], trail.ReadAll().Select(e => e.EventName).TakeLast(2));
    }

    // A checkpoint that cannot be written (a full disk) must not turn events that are already durable
    // into failed calls: they are answered, and verify reports them as not yet signed.
    [Fact]
    public void A_checkpoint_that_cannot_be_written_does_not_fail_the_durable_events()
    {
        using var trail = AuditTrail.Open(_home, _root, checkpointInterval: 2, segmentBytes: 0, checkpointPeriod: TimeSpan.Zero);
        trail.Append(Event("a"));
        var checkpoints = Audit("checkpoints.jsonl");
        File.Delete(checkpoints);
        File.CreateSymbolicLink(checkpoints, "/dev/full");

        var b = trail.Append(Event("b"));
        var c = trail.Append(Event("c"));

        Assert.Equal([1L, 2L, 3L], File.ReadAllLines(trail.TrailPath).Select(l => AuditJsonReader.Parse(l).EventSequence));
        Assert.Equal((2L, 3L), (b.EventSequence, c.EventSequence));
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

    // ---------------------------------------------------------------- segments

    private const long SmallSegment = 4096;   // about six events per segment

    private string Audit(string name) => Path.Combine(_home, "audit", name);

    private static AuditEvent OldEvent(string name, DateTimeOffset time) => Event(name) with { EventTime = time };

    [Fact]
    public void A_full_trail_file_is_sealed_as_a_segment_and_the_chain_goes_on_in_a_new_one()
    {
        using var trail = AuditTrail.Open(_home, _root, checkpointInterval: 0, segmentBytes: SmallSegment);
        for (var i = 0; i < 40; i++)
        {
            trail.Append(Event("e" + i));
        }

        var files = trail.Files;
        Assert.True(files.Count >= 4, string.Join(", ", files));
        Assert.Equal(Audit("trail-000000000001.jsonl"), files[0]);
        Assert.Equal(trail.TrailPath, files[^1]);

        // Each file starts where the one before ended, and is named by its first event.
        AuditEvent? last = null;
        foreach (var file in files)
        {
            var events = File.ReadAllLines(file).Select(AuditJsonReader.Parse).ToList();
            if (file != trail.TrailPath)
            {
                Assert.Equal($"trail-{events[0].EventSequence:D12}.jsonl", Path.GetFileName(file));
                Assert.True(new FileInfo(file).Length >= SmallSegment);
            }

            Assert.Equal(last?.EventSequence + 1 ?? 1, events[0].EventSequence);
            Assert.Equal(last?.Hash ?? AuditJsonGenesis, events[0].PreviousHash);
            last = events[^1];
        }

        Assert.Equal(Enumerable.Range(1, 40).Select(i => (long)i), trail.ReadAll().Select(e => e.EventSequence));
        var verification = trail.Verify();
        Assert.True(verification.Intact, verification.Message);
        Assert.Equal(40, verification.EventsChecked);
        Assert.Equal(files.Count - 1, verification.CheckpointsChecked);   // one signed checkpoint per sealed segment
        Assert.Contains($"in {files.Count} files", verification.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Two_trails_sealing_segments_of_one_file_keep_one_chain()
    {
        using var server = AuditTrail.Open(_home, _root, checkpointInterval: 5, segmentBytes: SmallSegment);
        using var cli = AuditTrail.Open(_home, _root, checkpointInterval: 5, segmentBytes: SmallSegment);

        // Rounds of ten concurrent appends, five through each trail: a batch holds at most five events,
        // so a segment passes its size by at most five events and many segments are sealed, by both trails.
        var written = new List<AuditEvent>();
        for (var round = 0; round < 30; round++)
        {
            written.AddRange(await Task.WhenAll(Enumerable.Range(round * 10, 10).Select(i => (i % 2 == 0 ? server : cli).AppendAsync(Event("p" + i)))));
        }

        Assert.Equal(Enumerable.Range(1, 300).Select(i => (long)i), written.Select(e => e.EventSequence).Order());
        Assert.Equal(Enumerable.Range(1, 300).Select(i => (long)i), cli.ReadAll().Select(e => e.EventSequence));
        Assert.True(server.Files.Count(f => f != server.TrailPath) > 10, string.Join(", ", server.Files));
        var verification = cli.Verify();
        Assert.True(verification.Intact, verification.Message);
    }

    [Fact]
    public async Task Verify_while_events_are_written_sees_one_consistent_trail()
    {
        // Every batch is checkpointed, and segments are sealed every few batches.
        using var writer = AuditTrail.Open(_home, _root, checkpointInterval: 1, segmentBytes: SmallSegment);
        using var verifier = AuditTrail.Open(_home, _root, checkpointInterval: 1, segmentBytes: SmallSegment);
        using var stop = new CancellationTokenSource();
        var writing = Task.Run(async () =>
        {
            var n = 0;
            while (!stop.IsCancellationRequested)
            {
                await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => writer.AppendAsync(Event("w" + n++))));
            }
        });

        // Checkpoints and sealed segments appear while each verification reads: none may be taken for tampering.
        var deadline = DateTime.UtcNow.AddSeconds(60);
        var verifications = 0;
        while ((verifications < 30 || writer.Files.Count < 5) && DateTime.UtcNow < deadline)
        {
            var verification = verifier.Verify();
            Assert.True(verification.Intact, verification.Message);
            verifications++;
        }

        await stop.CancelAsync();
        await writing;
        Assert.True(verifier.Verify().Intact);
        Assert.True(writer.Files.Count >= 5, $"{writer.Files.Count} files after {verifications} verifications");
    }

    [Fact]
    public void Segment_names_grow_past_twelve_digits_and_keep_their_order()
    {
        using var trail = AuditTrail.Open(_home, _root, checkpointInterval: 0, segmentBytes: SmallSegment);
        trail.Append(Event("one"));
        File.WriteAllText(Audit("trail-1000000000000.jsonl"), "");
        File.WriteAllText(Audit("trail-999999999999.jsonl"), "");
        File.WriteAllText(Audit("trail-notanumber.jsonl"), "");

        Assert.Equal(
            [Audit("trail-999999999999.jsonl"), Audit("trail-1000000000000.jsonl"), trail.TrailPath],
            trail.Files);
    }

    [Fact]
    public void A_deleted_segment_is_reported_as_missing_events()
    {
        using var trail = AuditTrail.Open(_home, _root, checkpointInterval: 0, segmentBytes: SmallSegment);
        for (var i = 0; i < 30; i++)
        {
            trail.Append(Event("e" + i));
        }

        var second = trail.Files[1];
        var removed = File.ReadAllLines(second).Select(AuditJsonReader.Parse).ToList();
        File.Delete(second);

        var result = trail.Verify();

        Assert.False(result.Intact);
        Assert.Equal(removed[^1].EventSequence + 1, result.FirstBadSequence);
        Assert.Contains($"Events {removed[0].EventSequence} to {removed[^1].EventSequence} are missing", result.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_file_renamed_into_a_segment_by_hand_is_reported()
    {
        using var trail = AuditTrail.Open(_home, _root, checkpointInterval: 0, segmentBytes: 0);   // never seals by itself
        for (var i = 0; i < 5; i++)
        {
            trail.Append(Event("e" + i));
        }

        File.Move(trail.TrailPath, Audit("trail-000000000001.jsonl"));
        var next = trail.Append(Event("after"));

        // The chain does go on from the renamed file, but no signed checkpoint sealed it.
        Assert.Equal(6, next.EventSequence);
        var result = trail.Verify();
        Assert.False(result.Intact);
        Assert.Equal(5, result.FirstBadSequence);
        Assert.Contains("without a signed checkpoint", result.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Prune_removes_old_segments_behind_a_signed_record_and_the_trail_still_verifies()
    {
        var old = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
        using var trail = AuditTrail.Open(_home, _root, checkpointInterval: 0, segmentBytes: SmallSegment);
        for (var i = 0; i < 20; i++)
        {
            trail.Append(OldEvent("old" + i, old.AddMinutes(i)));
        }

        for (var i = 0; i < 20; i++)
        {
            trail.Append(Event("new" + i));
        }

        var before = trail.Files;
        var result = trail.Prune(new DateTimeOffset(2026, 6, 1, 0, 0, 0, TimeSpan.Zero));

        Assert.True(result.SegmentsRemoved >= 2, result.Message);
        Assert.True(result.PrunedThroughSequence is > 0 and <= 20);
        Assert.Equal(before.Skip(result.SegmentsRemoved), trail.Files);
        Assert.All(before.Take(result.SegmentsRemoved), f => Assert.False(File.Exists(f)));
        Assert.Equal(result.PrunedThroughSequence + 1, trail.ReadAll().First().EventSequence);
        Assert.Contains($"\"prunedThrough\":{result.PrunedThroughSequence}", File.ReadAllText(Audit("checkpoints.jsonl")), StringComparison.Ordinal);

        trail.Append(Event("later"));
        var verification = trail.Verify();
        Assert.True(verification.Intact, verification.Message);
        Assert.Equal(41 - result.PrunedThroughSequence, verification.EventsChecked);
        Assert.Contains($"Events 1 to {result.PrunedThroughSequence} were pruned", verification.Message, StringComparison.Ordinal);

        // The signed records shrink with the trail: one prune record, and only checkpoints after it.
        var records = File.ReadAllLines(Audit("checkpoints.jsonl"));
        Assert.Single(records, r => r.Contains("prunedThrough", StringComparison.Ordinal));
        Assert.StartsWith("{\"prunedThrough\"", records[0], StringComparison.Ordinal);
        Assert.All(records.Skip(1), r => Assert.True(System.Text.Json.JsonDocument.Parse(r).RootElement.GetProperty("sequence").GetInt64() > result.PrunedThroughSequence));

        // Nothing newer than the cut-off goes, whatever is asked next.
        Assert.Equal(0, trail.Prune(new DateTimeOffset(2026, 6, 1, 0, 0, 0, TimeSpan.Zero)).SegmentsRemoved);
    }

    [Fact]
    public void A_prune_interrupted_before_its_files_went_is_finished_by_the_next()
    {
        using var trail = AuditTrail.Open(_home, _root, checkpointInterval: 0, segmentBytes: SmallSegment);
        for (var i = 0; i < 20; i++)
        {
            trail.Append(OldEvent("old" + i, new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero).AddMinutes(i)));
        }

        trail.Append(Event("new"));
        var first = trail.Files[0];
        var copy = File.ReadAllBytes(first);
        var result = trail.Prune(new DateTimeOffset(2026, 1, 1, 0, 8, 0, TimeSpan.Zero));
        Assert.True(result.SegmentsRemoved >= 1, result.Message);

        // As if the process died after the signed record and before deleting: the file is back.
        File.WriteAllBytes(first, copy);
        var verification = trail.Verify();
        Assert.True(verification.Intact, verification.Message);

        var again = trail.Prune(new DateTimeOffset(2025, 1, 1, 0, 0, 0, TimeSpan.Zero));   // a cut-off before everything
        Assert.False(File.Exists(first));
        Assert.Equal(1, again.SegmentsRemoved);
        Assert.True(trail.Verify().Intact);
    }

    [Fact]
    public void Lookups_by_time_read_only_the_segments_that_can_match()
    {
        var old = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
        using var trail = AuditTrail.Open(_home, _root, checkpointInterval: 0, segmentBytes: SmallSegment);
        for (var i = 0; i < 20; i++)
        {
            trail.Append(OldEvent("old" + i, old.AddMinutes(i)));
        }

        var recent = Enumerable.Range(0, 5).Select(i => trail.Append(Event("new" + i))).ToList();

        // Damage the oldest segment: a lookup of recent events must not even read it.
        var first = trail.Files[0];
        var lines = File.ReadAllLines(first);
        lines[1] = "not an event";
        File.WriteAllLines(first, lines);

        var found = trail.ReadRawLines(DateTimeOffset.UtcNow.AddHours(-1), null).Select(AuditJsonReader.Parse).ToList();
        Assert.Equal(recent.Select(e => e.EventSequence), found.Where(e => e.EventName.StartsWith("new", StringComparison.Ordinal)).Select(e => e.EventSequence));
        Assert.DoesNotContain(found, e => e.EventName == "old0");

        // A range that covers the damaged segment does read it.
        Assert.ThrowsAny<Exception>(() => trail.ReadRawLines(old, old.AddMinutes(1)).Select(AuditJsonReader.Parse).ToList());
    }

    [Fact]
    public void Prune_refuses_a_trail_that_does_not_verify_and_removes_nothing()
    {
        using var trail = AuditTrail.Open(_home, _root, checkpointInterval: 0, segmentBytes: SmallSegment);
        for (var i = 0; i < 20; i++)
        {
            trail.Append(OldEvent("old" + i, new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero)));
        }

        var first = trail.Files[0];
        File.WriteAllText(first, File.ReadAllText(first).Replace("\"old1\"", "\"odd1\"", StringComparison.Ordinal));
        var files = trail.Files;

        var e = Assert.Throws<InvalidOperationException>(() => trail.Prune(DateTimeOffset.UtcNow));

        Assert.Contains("was edited", e.Message, StringComparison.Ordinal);
        Assert.Equal(files, trail.Files);
    }

    [Fact]
    public void Segments_deleted_behind_a_forged_prune_record_are_detected()
    {
        using var trail = AuditTrail.Open(_home, _root, checkpointInterval: 0, segmentBytes: SmallSegment);
        for (var i = 0; i < 20; i++)
        {
            trail.Append(Event("e" + i));
        }

        var first = trail.Files[0];
        var last = File.ReadAllLines(first).Select(AuditJsonReader.Parse).Last();
        File.Delete(first);
        File.AppendAllText(Audit("checkpoints.jsonl"),
            $"{{\"prunedThrough\":{last.EventSequence},\"hash\":\"{last.Hash}\",\"time\":\"2026-11-28T00:00:00Z\",\"mac\":\"{new string('0', 64)}\"}}\n");

        var result = trail.Verify();

        Assert.False(result.Intact);
        Assert.Contains("prune record", result.Message, StringComparison.Ordinal);
        Assert.Contains("bad signature", result.Message, StringComparison.Ordinal);
    }

    private const string AuditJsonGenesis = "0000000000000000000000000000000000000000000000000000000000000000";
}
