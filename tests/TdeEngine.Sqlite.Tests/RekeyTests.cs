using Microsoft.Data.Sqlite;
using TdeEngine.Storage.Envelope;
using TdeEngine.Storage.Errors;
using TdeEngine.Storage.Native;
using TdeEngine.Storage.Pages;

namespace TdeEngine.Sqlite.Tests;

/// <summary>
/// DEK re-encryption: a new DEK, every page sealed again under it while connections keep working,
/// the old DEK gone from the file, and a run that a crash interrupted repaired and finished.
/// </summary>
public sealed class RekeyTests : IDisposable
{
    private readonly DatabaseFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    private string MakeChinook(string name, string journalMode)
    {
        using var db = _dir.OpenTde(name);
        db.Exec($"PRAGMA journal_mode={journalMode}");
        Chinook.Load(db);
        return _dir.File(name);
    }

    private static byte[] ReadFile(string file)
    {
        using var raw = RawDatabaseFile.Open(file, writable: false);
        var bytes = new byte[raw.Length];
        raw.Read(bytes, 0);
        return bytes;
    }

    private static (DatabaseEnvelope? A, DatabaseEnvelope? B) Slots(byte[] file) =>
        (DatabaseEnvelope.TryReadSlot(file.AsSpan(0, DatabaseEnvelope.SlotSize)),
         DatabaseEnvelope.TryReadSlot(file.AsSpan(DatabaseEnvelope.SlotSize, DatabaseEnvelope.SlotSize)));

    private static uint TrailerVersion(byte[] file, int pageSize, int reserve, long page) =>
        PageTrailer.DekVersion(file.AsSpan(DatabaseEnvelope.RegionSize + (int)((page - 1) * pageSize) + pageSize - reserve, reserve));

    [Theory]
    [InlineData("DELETE")]
    [InlineData("WAL")]
    public void Every_page_is_sealed_again_under_a_new_DEK_and_the_old_DEK_leaves_the_file(string journalMode)
    {
        var file = MakeChinook($"k-{journalMode}.db", journalMode);
        var before = ReadFile(file);
        var oldEnvelope = TdeDatabases.Status(file);
        var oldWrapped = DatabaseEnvelope.Read(before.AsSpan(0, DatabaseEnvelope.RegionSize), file).ActiveDek.WrappedDek;
        Assert.Equal(1u, oldEnvelope.ActiveDekVersion);

        var reports = new List<TdeRekeyProgress>();
        var status = TdeDatabases.Rekey(file, reports.Add, batchPages: 32);

        // One DEK, version 2, and every page under it.
        Assert.Equal(2u, status.ActiveDekVersion);
        Assert.Equal([2u], status.Deks.Select(d => d.Version));
        Assert.Equal(new Dictionary<uint, long> { [2] = status.PageCount }, status.PagesPerDekVersion);

        // Progress: batch by batch, to the end, and every page rewritten once.
        Assert.True(reports.Count >= status.PageCount / 32, $"{reports.Count} reports");
        Assert.Equal(reports.Select(r => r.PagesDone).Order(), reports.Select(r => r.PagesDone));
        Assert.Equal(status.PageCount, reports[^1].PagesDone);
        Assert.Equal(status.PageCount, reports[^1].PagesRewritten);
        Assert.All(reports, r => Assert.False(r.Resumed));

        // On disk: every page's bytes changed, both envelope slots list only the new DEK, and the
        // old wrapped DEK is nowhere in the file; no journal is left behind.
        var after = ReadFile(file);
        for (long page = 1; page <= status.PageCount; page++)
        {
            var at = DatabaseEnvelope.RegionSize + (int)((page - 1) * status.PageSize);
            Assert.False(before.AsSpan(at, status.PageSize).SequenceEqual(after.AsSpan(at, status.PageSize)), $"page {page} unchanged");
            Assert.Equal(2u, TrailerVersion(after, status.PageSize, status.ReservedBytes, page));
        }

        var (a, b) = Slots(after);
        Assert.Equal([2u], a!.Deks.Select(d => d.Version));
        Assert.Equal([2u], b!.Deks.Select(d => d.Version));
        Assert.Equal(-1, after.AsSpan().IndexOf(oldWrapped));
        Assert.False(File.Exists(RekeyJournal.PathFor(file)));

        using var db = _dir.OpenTde($"k-{journalMode}.db");
        Assert.Equal(3503L, db.Scalar<long>("SELECT count(*) FROM Track"));
        Assert.Equal("ok", db.Scalar<string>("PRAGMA integrity_check"));
        Assert.True(TdeDatabases.Verify(file).Intact);
    }

    [Theory]
    [InlineData("DELETE")]
    [InlineData("WAL")]
    public void A_connection_opened_before_the_rekey_reads_the_new_pages_and_seals_under_the_new_DEK(string journalMode)
    {
        var file = MakeChinook($"o-{journalMode}.db", journalMode);
        using var old = _dir.OpenTde($"o-{journalMode}.db");
        Assert.Equal(275L, old.Scalar<long>("SELECT count(*) FROM Artist"));   // it holds DEK 1 only

        TdeDatabases.Rekey(file);

        // Every page is now under DEK 2, which the old connection never saw: it reads the envelope again.
        Assert.Equal(3503L, old.Scalar<long>("SELECT count(*) FROM Track"));
        old.Exec("INSERT INTO Artist(Name) VALUES ('after the rekey')");
        old.Exec("CREATE TABLE more(x BLOB); INSERT INTO more VALUES (randomblob(100000))");
        if (journalMode == "WAL")
        {
            old.Exec("PRAGMA wal_checkpoint(TRUNCATE)");
        }

        // What it wrote is under DEK 2 (DEK 1 is gone from the file: a page under it could not be read).
        var status = TdeDatabases.Status(file);
        Assert.Equal([2u], status.PagesPerDekVersion.Keys);
        using var fresh = _dir.OpenTde($"o-{journalMode}.db");
        Assert.Equal(1L, fresh.Scalar<long>("SELECT count(*) FROM Artist WHERE Name = 'after the rekey'"));
        Assert.Equal(100000L, fresh.Scalar<long>("SELECT length(x) FROM more"));
        Assert.Equal("ok", fresh.Scalar<string>("PRAGMA integrity_check"));
    }

    [Theory]
    [InlineData("DELETE")]
    [InlineData("WAL")]
    public async Task Writers_and_readers_keep_working_during_the_rekey_and_lose_nothing(string journalMode)
    {
        var file = MakeChinook($"c-{journalMode}.db", journalMode);
        using (var db = _dir.OpenTde($"c-{journalMode}.db"))
        {
            db.Exec("CREATE TABLE log(n INTEGER PRIMARY KEY, v BLOB)");
            db.Exec("CREATE TABLE bulk(v BLOB); WITH x(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM x WHERE n < 3000) INSERT INTO bulk SELECT randomblob(3000) FROM x");
        }

        using var stop = new CancellationTokenSource();
        var inserted = 0L;
        var reads = 0L;
        var writer = Task.Run(() =>
        {
            using var db = new SqliteConnection(TdeSqlite.ConnectionString(file) + ";Default Timeout=60");
            db.Open();
            while (!stop.IsCancellationRequested)
            {
                db.Exec("INSERT INTO log(v) VALUES (randomblob(3000))");   // a page or so each, its own transaction
                Interlocked.Increment(ref inserted);
                Thread.Sleep(1);   // an app that writes all the time, not a loop that never lets go of the write lock
            }
        });
        var reader = Task.Run(() =>
        {
            using var db = new SqliteConnection(TdeSqlite.ConnectionString(file) + ";Default Timeout=60");
            db.Open();
            while (!stop.IsCancellationRequested)
            {
                Assert.Equal(3503L, db.Scalar<long>("SELECT count(*) FROM Track WHERE length(Name) > 0"));
                Interlocked.Increment(ref reads);
                Thread.Sleep(1);
            }
        });

        SpinWait.SpinUntil(() => Interlocked.Read(ref inserted) > 20 && Interlocked.Read(ref reads) > 2, TimeSpan.FromSeconds(30));
        var (insertedBefore, readsBefore) = (Interlocked.Read(ref inserted), Interlocked.Read(ref reads));
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var status = TdeDatabases.Rekey(file, batchPages: 24);   // some 140 batches; the job yields its lock to the app's connections, which wait inside SQLite
        watch.Stop();
        var (insertedDuring, readsDuring) = (Interlocked.Read(ref inserted) - insertedBefore, Interlocked.Read(ref reads) - readsBefore);
        await stop.CancelAsync();
        await Task.WhenAll(writer, reader);

        // Both kept working while the pages were rewritten.
        Assert.True(insertedDuring > 0 && readsDuring > 0, $"{insertedDuring} inserts and {readsDuring} reads during the rekey ({watch.ElapsedMilliseconds} ms)");
        Assert.Equal([2u], status.Deks.Select(d => d.Version));
        using var check = _dir.OpenTde($"c-{journalMode}.db");
        if (journalMode == "WAL")
        {
            check.Exec("PRAGMA wal_checkpoint(TRUNCATE)");
        }

        var v = TdeDatabases.Verify(file);
        Assert.True(v.Intact, "bad pages: " + string.Join(",", v.BadPages) + " of " + v.PageCount + " versions " + string.Join(",", TdeDatabases.Status(file).PagesPerDekVersion));
        Assert.Equal(Interlocked.Read(ref inserted), check.Scalar<long>("SELECT count(*) FROM log"));
        Assert.Equal("ok", check.Scalar<string>("PRAGMA integrity_check"));
        Assert.Equal([2u], TdeDatabases.Status(file).PagesPerDekVersion.Keys);
    }

    [Fact]
    public void A_batch_torn_by_a_power_cut_is_put_back_from_the_journal_and_the_rekey_resumes()
    {
        var file = MakeChinook("t.db", "DELETE");

        // Interrupted after its first batch: the new DEK is active, a few pages are under it.
        Assert.Throws<OperationCanceledException>(() =>
            TdeDatabases.Rekey(file, _ => throw new OperationCanceledException("stopped"), batchPages: 10));
        var midway = TdeDatabases.Status(file);
        Assert.Equal(2, midway.Deks.Count);
        Assert.Equal(10L, midway.PagesPerDekVersion[2]);

        // A batch of pages 11..14 whose journal was made durable, then a power cut tore 12 and 13.
        var pageSize = midway.PageSize;
        var bytes = ReadFile(file);
        var images = Enumerable.Range(11, 4)
            .Select(p => ((long)p, bytes.AsSpan(DatabaseEnvelope.RegionSize + ((p - 1) * pageSize), pageSize).ToArray())).ToList();
        RekeyJournal.Write(file, Convert.FromHexString(midway.DatabaseId), pageSize, images);
        using (var raw = RawDatabaseFile.Open(file, writable: true))
        {
            foreach (var page in new[] { 12, 13 })
            {
                raw.Write(new byte[pageSize / 2], DatabaseEnvelope.RegionSize + ((page - 1) * pageSize) + (pageSize / 4));
            }
        }

        // Meanwhile a torn page is named, with what to do.
        using (var db = _dir.OpenTde("t.db"))
        {
            var cause = Assert.Throws<TdeStorageException>(() => TdeSqlite.Explain(() => db.Scalar<long>("SELECT count(*) FROM Track WHERE length(Name) > 0")));
            Assert.Equal(TdeStorageException.Codes.PageAuthenticationFailed, cause.Code);
            Assert.Contains("tde db rekey", cause.Message, StringComparison.Ordinal);
        }

        var reports = new List<TdeRekeyProgress>();
        var status = TdeDatabases.Rekey(file, reports.Add);

        Assert.All(reports, r => Assert.True(r.Resumed));
        Assert.Equal(status.PageCount - 10, reports[^1].PagesRewritten);   // the first batch is not done again
        Assert.Equal([2u], status.Deks.Select(d => d.Version));
        Assert.Equal([2u], status.PagesPerDekVersion.Keys);
        using var check = _dir.OpenTde("t.db");
        Assert.Equal(3503L, check.Scalar<long>("SELECT count(*) FROM Track WHERE length(Name) > 0"));
        Assert.Equal("ok", check.Scalar<string>("PRAGMA integrity_check"));
    }

    [Fact]
    public void A_plain_file_is_refused_and_a_disabled_key_stops_the_rekey_before_anything_changes()
    {
        using (var plain = _dir.OpenPlain("plain.db"))
        {
            plain.Exec("CREATE TABLE t(x)");
        }

        var notTde = Assert.Throws<TdeStorageException>(() => TdeDatabases.Rekey(_dir.File("plain.db")));
        Assert.Equal(TdeStorageException.Codes.PlaintextDatabase, notTde.Code);

        var key = TdeTestEnvironment.Kms.CreateKey(TdeTestEnvironment.Caller, new() { Description = "rekey, disabled" }).KeyId;
        using (var db = _dir.OpenTde("d.db", $"kms_key={key}"))
        {
            Chinook.Load(db);
        }

        var file = _dir.File("d.db");
        var before = ReadFile(file);
        TdeTestEnvironment.Kms.DisableKey(TdeTestEnvironment.Caller, key);
        try
        {
            var refused = Assert.Throws<TdeEngine.Kms.Errors.KmsException>(() => TdeDatabases.Rekey(file));
            Assert.Equal(TdeEngine.Kms.Errors.KmsErrors.Codes.Disabled, refused.Code);
            Assert.True(before.AsSpan().SequenceEqual(ReadFile(file)), "nothing may change");
        }
        finally
        {
            TdeTestEnvironment.Kms.EnableKey(TdeTestEnvironment.Caller, key);
        }

        Assert.Throws<ArgumentOutOfRangeException>(() => TdeDatabases.Rekey(file, batchPages: 0));
    }

    [Fact]
    public void A_tampered_page_stops_the_rekey_before_its_batch_is_written()
    {
        var file = MakeChinook("x.db", "DELETE");
        var pageSize = TdeDatabases.Status(file).PageSize;
        using (var raw = RawDatabaseFile.Open(file, writable: true))
        {
            raw.Write([0x5A], DatabaseEnvelope.RegionSize + (20L * pageSize) + 100);   // page 21
        }

        var before = ReadFile(file);
        var e = Assert.Throws<TdeStorageException>(() => TdeDatabases.Rekey(file, batchPages: 64));

        Assert.Equal(TdeStorageException.Codes.PageAuthenticationFailed, e.Code);
        Assert.Equal(21L, e.PageNumber);
        var after = ReadFile(file);
        Assert.True(before.AsSpan(DatabaseEnvelope.RegionSize).SequenceEqual(after.AsSpan(DatabaseEnvelope.RegionSize)), "no page may change");
        Assert.False(RekeyJournal.IsPending(file));
    }

    [Fact]
    public void An_edited_key_ARN_in_an_envelope_of_an_earlier_build_is_refused_before_a_new_DEK_is_made()
    {
        var victimKey = TdeTestEnvironment.Kms.CreateKey(TdeTestEnvironment.Caller, new() { Description = "victim" }).KeyId;
        var attackerKey = TdeTestEnvironment.Kms.CreateKey(TdeTestEnvironment.Caller, new() { Description = "attacker" }).KeyId;
        using (var db = _dir.OpenTde("k.db", $"kms_key={victimKey}"))
        {
            db.Exec("CREATE TABLE t(v); INSERT INTO t VALUES ('secret');");
        }

        var file = _dir.File("k.db");
        RewrapTests.ForgeEnvelopeKeyArn(file, victimKey, attackerKey);
        var forged = ReadFile(file);

        var e = Assert.Throws<TdeStorageException>(() => TdeDatabases.Rekey(file));

        Assert.Equal(TdeStorageException.Codes.EnvelopeKeyMismatch, e.Code);
        Assert.Equal(forged, ReadFile(file));   // no new DEK, no page touched
    }
}

