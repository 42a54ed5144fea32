using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using TdeEngine.Audit;
using TdeEngine.Kms.RootKeys;
using TdeEngine.Tests.Shared;

namespace TdeEngine.Gateway.Tests;

/// <summary>
/// What <see cref="AuditTrail.Verify"/> catches beyond the plain cases of GatewayTests: lines changed
/// without breaking their hash, forged sequence numbers, an unfinished last write, and the chain of
/// signed records.
/// </summary>
public sealed class AuditTrailVerifyTests : IDisposable
{
    private readonly string _home = Path.Combine(Path.GetTempPath(), "tde-verify-" + Guid.NewGuid().ToString("N"));
    private readonly FileRootKeyProvider _root;

    public AuditTrailVerifyTests()
    {
        Directory.CreateDirectory(_home);
        _root = FileRootKeyProvider.OpenOrCreate(Path.Combine(_home, "root.key"));
    }

    public void Dispose()
    {
        _root.Dispose();
        Directory.Delete(_home, recursive: true);
    }

    private string Audit(string name) => Path.Combine(_home, "audit", name);

    private static AuditEvent Event(string name) => RootAuditEvent.Create(name, "key-" + name, DateTimeOffset.UtcNow);

    private AuditTrail Filled(int count, long checkpointInterval = 0, long segmentBytes = 0)
    {
        var trail = AuditTrail.Open(_home, _root, checkpointInterval, segmentBytes, checkpointPeriod: TimeSpan.Zero);
        for (var i = 0; i < count; i++)
        {
            trail.Append(Event("e" + i));
        }

        return trail;
    }

    // The hash as docs/audit.md tells anyone to compute it: over the line without its hash member.
    private static string Rehash(string line)
    {
        var cut = line.LastIndexOf(",\"hash\":\"", StringComparison.Ordinal);
        var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(line[..cut] + "}")));
        return line[..cut] + ",\"hash\":\"" + hash + "\"}";
    }

    private static void WriteLines(string path, IEnumerable<string> lines) => File.WriteAllText(path, string.Concat(lines.Select(l => l + "\n")));

    // ---------------------------------------------------------------- 1. a line must be exactly what the trail wrote

    [Theory]
    [InlineData("member after the hash")]
    [InlineData("carriage return")]
    [InlineData("trailing spaces")]
    [InlineData("space inside")]
    public void An_event_changed_without_breaking_its_hash_is_reported_as_edited(string change)
    {
        using var trail = Filled(5);
        var lines = File.ReadAllLines(trail.TrailPath);
        var id = AuditJsonReader.Parse(lines[2]).EventId;
        lines[2] = change switch
        {
            // The recomputed hash ignores what follows the hash member, and a lenient parser takes the last eventName.
            "member after the hash" => lines[2][..^1] + ",\"eventName\":\"Forged\"}",
            "carriage return" => lines[2] + "\r",
            "trailing spaces" => lines[2] + "   ",
            _ => Rehash(lines[2].Replace("\"eventName\":", "\"eventName\": ", StringComparison.Ordinal)),
        };
        WriteLines(trail.TrailPath, lines);

        var result = trail.Verify();

        Assert.False(result.Intact, result.Message);
        Assert.Equal(3, result.FirstBadSequence);
        Assert.Equal(id, result.FirstBadEventId);
        Assert.Equal($"Event 3 ({id}) was edited: its content does not match its hash.", result.Message);
    }

    [Fact]
    public void An_event_id_edited_into_an_unpaired_surrogate_escape_is_reported_not_thrown()
    {
        using var trail = Filled(5);
        var lines = File.ReadAllLines(trail.TrailPath);
        var id = AuditJsonReader.Parse(lines[2]).EventId;
        lines[2] = lines[2].Replace($"\"eventId\":\"{id}\"", "\"eventId\":\"\\ud800\"", StringComparison.Ordinal);
        WriteLines(trail.TrailPath, lines);

        var result = trail.Verify();

        Assert.False(result.Intact, result.Message);
        Assert.Equal(3, result.FirstBadSequence);
        Assert.Equal("The line after event 2 in trail.jsonl is not a valid audit event (edited or damaged).", result.Message);
    }

    [Fact]
    public void A_line_with_a_member_named_twice_is_not_read_as_an_event()
    {
        using var trail = Filled(1);
        var line = File.ReadAllLines(trail.TrailPath)[0];

        Assert.ThrowsAny<JsonException>(() => AuditJsonReader.Parse(line[..^1] + ",\"eventName\":\"Forged\"}"));
    }

    [Fact]
    public void Unpaired_surrogates_from_an_embedding_app_are_written_as_U_FFFD_and_verify()
    {
        using var trail = AuditTrail.Open(_home, _root, 0, 0, checkpointPeriod: TimeSpan.Zero);
        var e = Event("lone");
        e = e with
        {
            UserAgent = "agent \uD800 end",
            RequestParameters = new Dictionary<string, string>
            {
                ["KeyId"] = "k\uDC00",
                ["k\uD83D"] = "pair \uD83D\uDE00 kept",   // a whole pair stays as it is
                ["k\uDE00"] = "collides with the key above once cleaned",
            },
        };
        trail.Append(e);
        trail.Append(Event("after"));

        var result = trail.Verify();
        Assert.True(result.Intact, result.Message);
        var written = trail.ReadAll().First();
        Assert.Equal("agent \uFFFD end", written.UserAgent);
        Assert.Equal("k\uFFFD", written.RequestParameters["KeyId"]);
        Assert.Equal("pair \uD83D\uDE00 kept", written.RequestParameters["k\uFFFD"]);   // the first of the colliding keys in order
        Assert.Equal(2, written.RequestParameters.Count);
    }

    // ---------------------------------------------------------------- 2. sequences start at 1 and have no gap

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    [InlineData(2)]
    public void A_forged_event_with_a_low_sequence_breaks_the_chain_on_a_trail_never_pruned(long sequence)
    {
        using var trail = Filled(5);
        var lines = File.ReadAllLines(trail.TrailPath).ToList();
        var forged = Rehash(lines[2].Replace("\"eventSequence\":3,", $"\"eventSequence\":{sequence},", StringComparison.Ordinal)
            .Replace("\"eventName\":\"e2\"", "\"eventName\":\"Forged\"", StringComparison.Ordinal));
        lines.Insert(3, forged);
        WriteLines(trail.TrailPath, lines);

        var result = trail.Verify();

        Assert.False(result.Intact, result.Message);
        Assert.Equal(sequence, result.FirstBadSequence);
        Assert.Contains($"The chain breaks at event {sequence} (", result.Message, StringComparison.Ordinal);
        Assert.Contains("expected event 4", result.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_forged_event_at_or_below_the_prune_point_breaks_the_chain_and_only_whole_leftover_segments_are_skipped()
    {
        var old = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
        using var trail = AuditTrail.Open(_home, _root, checkpointInterval: 0, segmentBytes: 4096, checkpointPeriod: TimeSpan.Zero);
        for (var i = 0; i < 20; i++)
        {
            trail.Append(Event("old" + i) with { EventTime = old.AddMinutes(i) });
        }

        trail.Append(Event("new"));
        var first = trail.Files[0];
        var leftover = File.ReadAllBytes(first);
        var pruned = trail.Prune(old.AddMinutes(8)).PrunedThroughSequence;
        Assert.True(pruned > 0);

        // An interrupted prune: the whole segment is back. It is skipped by verify and by lookups.
        File.WriteAllBytes(first, leftover);
        Assert.True(trail.Verify().Intact, trail.Verify().Message);
        Assert.All(trail.ReadAll(), e => Assert.True(e.EventSequence > pruned));

        // A forged event numbered inside the pruned range, in the active file, is not skipped.
        var lines = File.ReadAllLines(trail.TrailPath).ToList();
        lines.Add(Rehash(lines[^1].Replace($"\"eventSequence\":{AuditJsonReader.Parse(lines[^1]).EventSequence},", $"\"eventSequence\":{pruned},", StringComparison.Ordinal)
            .Replace("\"eventName\":\"new\"", "\"eventName\":\"Forged\"", StringComparison.Ordinal)));
        WriteLines(trail.TrailPath, lines);

        var result = trail.Verify();

        Assert.False(result.Intact, result.Message);
        Assert.Equal(pruned, result.FirstBadSequence);
        Assert.Contains("The chain breaks at event", result.Message, StringComparison.Ordinal);
    }

    // ---------------------------------------------------------------- 3. an unfinished last write

    [Fact]
    public void An_unfinished_last_line_is_reported_as_such_and_set_aside_by_the_next_append()
    {
        using var trail = Filled(3);
        var length = new FileInfo(trail.TrailPath).Length;
        File.AppendAllText(trail.TrailPath, "{\"eventSequence\":4,\"eventId\":\"abc");

        var before = trail.Verify();
        Assert.True(before.Intact, before.Message);
        Assert.Equal(3, before.EventsChecked);
        Assert.Contains("unfinished last line", before.Message, StringComparison.Ordinal);
        Assert.Contains("never acknowledged", before.Message, StringComparison.Ordinal);
        Assert.Equal(3, trail.ReadAll().Count());

        var next = trail.Append(Event("after"));

        Assert.Equal(4, next.EventSequence);
        Assert.Equal("{\"eventSequence\":4,\"eventId\":\"abc", File.ReadAllText(Audit($"trail.torn-{length}")));
        var after = trail.Verify();
        Assert.True(after.Intact, after.Message);
        Assert.Equal(4, after.EventsChecked);
        Assert.Contains("set aside earlier", after.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_checkpoint_after_an_unfinished_last_line_covers_the_last_complete_event()
    {
        using var trail = Filled(3);
        File.AppendAllText(trail.TrailPath, "{\"eventSeq");

        trail.Checkpoint();

        var result = trail.Verify();
        Assert.True(result.Intact, result.Message);
        Assert.Equal(1, result.CheckpointsChecked);
        Assert.DoesNotContain("unfinished last line", result.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_unfinished_line_in_a_sealed_segment_is_reported()
    {
        using var trail = Filled(20, segmentBytes: 4096);
        var first = trail.Files[0];
        var bytes = File.ReadAllBytes(first);
        File.WriteAllBytes(first, bytes[..^10]);

        var result = trail.Verify();

        Assert.False(result.Intact);
        Assert.Contains("ends with an unfinished line", result.Message, StringComparison.Ordinal);
    }

    // ---------------------------------------------------------------- 4. the chain of signed records

    [Fact]
    public void Closing_a_trail_signs_what_it_appended_so_a_cut_is_caught()
    {
        using (var trail = Filled(3))
        {
        }

        var lines = File.ReadAllLines(Audit("trail.jsonl"));
        WriteLines(Audit("trail.jsonl"), lines.Take(2));
        using var reopened = AuditTrail.Open(_home, _root);

        var result = reopened.Verify();

        Assert.False(result.Intact);
        Assert.Equal(3, result.FirstBadSequence);
        Assert.Contains("events were cut from the end", result.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task While_events_are_appended_a_checkpoint_is_signed_within_the_period()
    {
        using var trail = AuditTrail.Open(_home, _root, checkpointInterval: 0, checkpointPeriod: TimeSpan.FromMilliseconds(200));
        trail.Append(Event("one"));

        // No further append and no Dispose: the writer signs on its own once the period has passed.
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (trail.Verify().CheckpointsChecked == 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50);
        }

        var result = trail.Verify();
        Assert.True(result.Intact, result.Message);
        Assert.Equal(1, result.CheckpointsChecked);
        Assert.DoesNotContain("not yet covered", result.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Deleting_a_signed_record_from_the_middle_is_caught()
    {
        using (var trail = Filled(0))
        {
            for (var i = 0; i < 6; i++)
            {
                trail.Append(Event("e" + i));
                trail.Checkpoint();
            }
        }

        var records = File.ReadAllLines(Audit("checkpoints.jsonl")).ToList();
        records.RemoveAt(3);
        WriteLines(Audit("checkpoints.jsonl"), records);
        using var reopened = AuditTrail.Open(_home, _root);

        var result = reopened.Verify();

        Assert.False(result.Intact);
        Assert.Contains("line 4 of checkpoints.jsonl is out of its chain", result.Message, StringComparison.Ordinal);
        Assert.Contains("the checkpoint file was altered", result.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_trail_whose_signed_records_were_all_deleted_and_rewritten_consistently_is_caught()
    {
        using (var trail = Filled(4))
        {
        }

        // A consistent rewrite: every event renamed, every hash recomputed, the signed records removed.
        var lines = File.ReadAllLines(Audit("trail.jsonl"));
        var previous = new string('0', 64);
        var rewritten = new List<string>();
        foreach (var line in lines)
        {
            var e = AuditJsonReader.Parse(line);
            var forged = Rehash(line.Replace(e.PreviousHash, previous, StringComparison.Ordinal).Replace("\"eventName\":\"e", "\"eventName\":\"x", StringComparison.Ordinal));
            previous = AuditJsonReader.Parse(forged).Hash;
            rewritten.Add(forged);
        }

        WriteLines(Audit("trail.jsonl"), rewritten);
        File.Delete(Audit("checkpoints.jsonl"));
        using var reopened = AuditTrail.Open(_home, _root);

        var result = reopened.Verify();

        Assert.False(result.Intact);
        Assert.Contains("the checkpoint file was emptied, deleted or replaced", result.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("{}")]
    [InlineData("{\"sequence\":1,\"hash\":\"HASH\",\"time\":\"2026-11-28T00:00:00Z\",\"index\":1,\"mac\":\"abc\"}")]
    [InlineData("[1]")]
    [InlineData("{\"sequence\":\"x\",\"hash\":\"HASH\",\"time\":\"t\",\"mac\":\"MAC\"}")]
    public void A_malformed_signed_record_is_reported_as_an_altered_checkpoint_file(string record)
    {
        using var trail = Filled(2);
        var hash = trail.ReadAll().First().Hash;
        File.AppendAllText(Audit("checkpoints.jsonl"), record.Replace("HASH", hash, StringComparison.Ordinal).Replace("MAC", new string('0', 64), StringComparison.Ordinal) + "\n");

        var result = trail.Verify();

        Assert.False(result.Intact);
        Assert.Contains("of checkpoints.jsonl is not a signed record: the checkpoint file was altered.", result.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_trail_from_before_chained_records_still_verifies_and_its_old_checkpoints_still_count()
    {
        // A trail made by an earlier version: its key wrapped under the v1 context, unchained records.
        Directory.CreateDirectory(Audit(""));
        var key = RandomNumberGenerator.GetBytes(32);
        File.WriteAllBytes(Audit("checkpoint.key"), _root.Wrap(key, "TdeEngine/audit-checkpoint-key/v1"u8));
        using (var trail = Filled(3))
        {
            var third = trail.ReadAll().Last();
            const string time = "2026-01-01T00:00:00Z";
            var mac = Convert.ToHexStringLower(HMACSHA256.HashData(key, Encoding.UTF8.GetBytes($"TdeEngine-audit-checkpoint|3|{third.Hash}|{time}")));
            File.WriteAllText(Audit("checkpoints.jsonl"), $"{{\"sequence\":3,\"hash\":\"{third.Hash}\",\"time\":\"{time}\",\"mac\":\"{mac}\"}}\n");

            var result = trail.Verify();
            Assert.True(result.Intact, result.Message);
            Assert.Equal(1, result.CheckpointsChecked);

            trail.Append(Event("after upgrade"));
        }

        // Closing appended a chained record after the old one: both verify.
        Assert.Contains("\"index\":0", File.ReadAllLines(Audit("checkpoints.jsonl"))[1], StringComparison.Ordinal);
        using var reopened = AuditTrail.Open(_home, _root);
        var verification = reopened.Verify();
        Assert.True(verification.Intact, verification.Message);
        Assert.Equal(2, verification.CheckpointsChecked);

        // And the old record still catches a cut.
        WriteLines(Audit("trail.jsonl"), File.ReadAllLines(Audit("trail.jsonl")).Take(2));
        File.WriteAllLines(Audit("checkpoints.jsonl"), File.ReadAllLines(Audit("checkpoints.jsonl")).Take(1));
        Assert.Contains("events were cut from the end", reopened.Verify().Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Audit_files_are_readable_by_their_owner_only()
    {
        if (OperatingSystem.IsWindows())
        {
            return;   // Windows keeps the directory's access rules
        }

        using (var trail = Filled(2))
        {
        }

        foreach (var name in new[] { "trail.jsonl", "checkpoints.jsonl", "checkpoint.key" })
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Audit(name)));
        }
    }
}
