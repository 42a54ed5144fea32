using System.Diagnostics;
using Microsoft.Data.Sqlite;
using TdeEngine.Kms.Envelope;
using TdeEngine.Storage.Envelope;
using TdeEngine.Storage.Errors;

namespace TdeEngine.Sqlite.Tests;

/// <summary>
/// Re-wrapping a database's DEKs when its KMS key rotates (or moves to another key): only the
/// envelope changes, and file access beside open connections never drops their locks.
/// </summary>
public sealed class RewrapTests : IDisposable
{
    private readonly DatabaseFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    private static string NewKey(string description) =>
        TdeTestEnvironment.Kms.CreateKey(TdeTestEnvironment.Caller, new() { Description = description }).KeyId;

    private string MakeDatabase(string name, string key, string journalMode = "DELETE")
    {
        using var db = _dir.OpenTde(name, $"kms_key={key}");
        db.Exec($"PRAGMA journal_mode={journalMode}");
        Chinook.Load(db);
        return _dir.File(name);
    }

    private static DatabaseEnvelope Envelope(string file) => DatabaseEnvelope.Read(File.ReadAllBytes(file).AsSpan(0, DatabaseEnvelope.RegionSize), file);

    [Fact]
    public void After_a_key_rotation_only_the_envelope_changes_and_the_DEK_is_under_the_new_version()
    {
        var key = NewKey("rotated");
        var file = MakeDatabase("r.db", key);
        var before = File.ReadAllBytes(file);
        var newVersion = TdeTestEnvironment.Kms.CreateKeyVersion(TdeTestEnvironment.Caller, key).KeyVersionId;

        var status = TdeDatabases.Rewrap(file);

        var after = File.ReadAllBytes(file);
        Assert.Equal(before.Length, after.Length);
        Assert.True(before.AsSpan(DatabaseEnvelope.RegionSize).SequenceEqual(after.AsSpan(DatabaseEnvelope.RegionSize)), "no page may change");
        Assert.False(before.AsSpan(0, DatabaseEnvelope.RegionSize).SequenceEqual(after.AsSpan(0, DatabaseEnvelope.RegionSize)));
        var envelope = Envelope(file);
        Assert.All(envelope.Deks, d => Assert.Equal(newVersion, CiphertextBlob.ReadHeader(d.WrappedDek).KeyVersionId));
        Assert.Equal(status.KmsKeyArn, envelope.KmsKeyArn);

        using var db = _dir.OpenTde("r.db");
        Assert.Equal(3503L, db.Scalar<long>("SELECT count(*) FROM Track"));
        Assert.Equal("ok", db.Scalar<string>("PRAGMA integrity_check"));
    }

    [Fact]
    public void After_moving_to_another_key_the_old_key_can_be_disabled_and_no_copy_of_the_old_wrapping_remains()
    {
        var oldKey = NewKey("old");
        var newKey = NewKey("new");
        var file = MakeDatabase("m.db", oldKey);
        var oldWrapped = Envelope(file).Deks.Select(d => d.WrappedDek).ToList();

        var status = TdeDatabases.Rewrap(file, newKey);

        Assert.EndsWith(newKey, status.KmsKeyArn, StringComparison.Ordinal);
        var bytes = File.ReadAllBytes(file);
        Assert.All(oldWrapped, w => Assert.Equal(-1, bytes.AsSpan().IndexOf(w)));   // neither envelope slot keeps it

        TdeTestEnvironment.Kms.DisableKey(TdeTestEnvironment.Caller, oldKey);
        TdeTestEnvironment.Clock.Advance(TdeTestEnvironment.Options.DekCacheTtl + TimeSpan.FromSeconds(1));
        using var db = _dir.OpenTde("m.db");
        Assert.Equal(275L, db.Scalar<long>("SELECT count(*) FROM Artist"));
    }

    [Fact]
    public async Task A_rewrap_waits_for_a_writer_and_keeps_every_row()
    {
        var key = NewKey("busy");
        var file = MakeDatabase("w.db", key, "WAL");
        TdeTestEnvironment.Kms.CreateKeyVersion(TdeTestEnvironment.Caller, key);
        using var stop = new CancellationTokenSource();
        var inserted = 0;
        var writer = Task.Run(() =>
        {
            using var db = new SqliteConnection(TdeSqlite.ConnectionString(file) + ";Default Timeout=30");
            db.Open();
            db.Exec("CREATE TABLE IF NOT EXISTS log(n INTEGER PRIMARY KEY, v TEXT)");
            while (!stop.IsCancellationRequested)
            {
                db.Exec($"INSERT INTO log(v) VALUES ('{new string('x', 2000)}')");   // its own transaction each time
                Interlocked.Increment(ref inserted);
            }
        });

        SpinWait.SpinUntil(() => Volatile.Read(ref inserted) > 20, TimeSpan.FromSeconds(30));
        for (var i = 0; i < 3; i++)
        {
            TdeDatabases.Rewrap(file);
        }

        await stop.CancelAsync();
        await writer;
        TdeTestEnvironment.Clock.Advance(TdeTestEnvironment.Options.DekCacheTtl + TimeSpan.FromSeconds(1));
        using var check = _dir.OpenTde("w.db");
        Assert.Equal(inserted, check.Scalar<long>("SELECT count(*) FROM log"));
        Assert.Equal("ok", check.Scalar<string>("PRAGMA integrity_check"));
    }

    [Fact]
    public void A_plain_file_is_not_rewrapped()
    {
        using (var plain = _dir.OpenPlain("plain.db"))
        {
            plain.Exec("CREATE TABLE t(x)");
        }

        var e = Assert.Throws<TdeStorageException>(() => TdeDatabases.Rewrap(_dir.File("plain.db")));
        Assert.Equal(TdeStorageException.Codes.PlaintextDatabase, e.Code);
        Assert.Contains("'tde db encrypt' (or TdeDatabases.Encrypt)", e.Message, StringComparison.Ordinal);   // an API that exists
    }

    [Fact]
    public void Status_and_verify_beside_an_open_write_transaction_keep_its_lock()
    {
        var key = NewKey("locks");
        var file = MakeDatabase("l.db", key);
        using var holder = _dir.OpenTde("l.db");
        using var tx = holder.BeginTransaction(deferred: false);   // BEGIN IMMEDIATE: SQLite's RESERVED lock
        holder.Exec("INSERT INTO Genre(Name) VALUES ('held')");
        Assert.True(ReservedLockHeldElsewhere(file));

        // POSIX drops all of a process's locks on a file when it closes any descriptor of it: these
        // read the file through SQLite's unix VFS, which defers such closes, never through one of their own.
        TdeDatabases.Status(file);
        Assert.True(ReservedLockHeldElsewhere(file), "Status dropped the open transaction's lock");
        Assert.True(TdeDatabases.Verify(file).Intact);
        Assert.True(ReservedLockHeldElsewhere(file), "Verify dropped the open transaction's lock");
        tx.Rollback();
        Assert.False(ReservedLockHeldElsewhere(file));
    }

    // Asks another process whether SQLite's RESERVED byte of the file is locked (by this process).
    private static bool ReservedLockHeldElsewhere(string file)
    {
        const string Probe = "import fcntl,sys\nf=open(sys.argv[1],'rb+')\ntry:\n  fcntl.lockf(f,fcntl.LOCK_EX|fcntl.LOCK_NB,1,0x40000001)\n  print('free')\nexcept OSError:\n  print('held')\n";
        var start = new ProcessStartInfo("/usr/bin/python3") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add(Probe);
        start.ArgumentList.Add(file);
        using var probe = Process.Start(start)!;
        var answer = probe.StandardOutput.ReadToEnd().Trim();
        probe.WaitForExit();
        Assert.True(answer is "held" or "free", answer + probe.StandardError.ReadToEnd());
        return answer == "held";
    }

    // In an envelope of an earlier build (no MAC, only an unkeyed SHA-256), anyone who can write the
    // file can change the key ARN; the cross-check against the wrapped DEK is what catches it there.
    // (An envelope with a MAC refuses the edit outright: EnvelopeMacTests.)
    internal static void ForgeEnvelopeKeyArn(string file, string from, string to)
    {
        TestEnvelopes.MakeLegacy(file);
        var envelope = TestEnvelopes.Read(file);
        Assert.False(envelope.Authenticated);
        var forged = envelope with { Sequence = envelope.Sequence + 1, KmsKeyArn = envelope.KmsKeyArn.Replace(from, to, StringComparison.Ordinal) };
        Assert.NotEqual(envelope.KmsKeyArn, forged.KmsKeyArn);
        TestEnvelopes.WriteLegacy(file, forged);
    }

    [Fact]
    public void An_edited_key_ARN_in_an_envelope_of_an_earlier_build_is_refused_instead_of_redirecting_the_rewrap()
    {
        var victimKey = NewKey("victim");
        var attackerKey = NewKey("attacker");
        var file = MakeDatabase("k.db", victimKey);
        ForgeEnvelopeKeyArn(file, victimKey, attackerKey);
        var forged = File.ReadAllBytes(file);
        TdeTestEnvironment.Kms.CreateKeyVersion(TdeTestEnvironment.Caller, victimKey);   // the routine rotation

        var e = Assert.Throws<TdeStorageException>(() => TdeDatabases.Rewrap(file));   // the routine re-wrap after it

        Assert.Equal(TdeStorageException.Codes.EnvelopeKeyMismatch, e.Code);
        Assert.Contains(victimKey, e.Message, StringComparison.Ordinal);
        Assert.Equal(forged, File.ReadAllBytes(file));   // nothing written
        Assert.Equal(victimKey, CiphertextBlob.ReadHeader(Envelope(file).ActiveDek.WrappedDek).KeyId);

        // Naming the key explicitly re-wraps and writes a consistent envelope again.
        var status = TdeDatabases.Rewrap(file, victimKey);
        Assert.EndsWith("key/" + victimKey, status.KmsKeyArn, StringComparison.Ordinal);
        Assert.Equal(victimKey, Envelope(file).WrappingKeyId(file));
    }
}

