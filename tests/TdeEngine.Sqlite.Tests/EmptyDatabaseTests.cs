using Microsoft.Data.Sqlite;
using TdeEngine.Storage.Envelope;
using TdeEngine.Storage.Errors;

namespace TdeEngine.Sqlite.Tests;

/// <summary>
/// A new TDE database is its envelope alone, marked empty, until SQLite writes page 1 (as a new plain
/// database is an empty file). A file without pages and without the mark was truncated.
/// </summary>
public sealed class EmptyDatabaseTests : IDisposable
{
    private readonly DatabaseFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void A_new_database_is_its_envelope_alone_until_the_first_write()
    {
        var path = _dir.File("new.db");
        using (var db = _dir.OpenTde("new.db", "page_size=8192"))
        {
            Assert.Equal(0L, db.Scalar<long>("SELECT count(*) FROM sqlite_master"));
            // SQLite took the page size from the envelope before page 1 existed.
            Assert.Equal(8192L, db.Scalar<long>("PRAGMA page_size"));
        }

        Assert.Equal(DatabaseEnvelope.RegionSize, new FileInfo(path).Length);
        Assert.True(TestEnvelopes.Read(path).Empty);
        Assert.Equal(0, TdeDatabases.Status(path).PageCount);
        Assert.True(TdeDatabases.Verify(path).Intact);

        // Re-wrap and re-encryption of an empty database keep it empty and usable.
        TdeDatabases.Rewrap(path);
        TdeDatabases.Rekey(path);
        Assert.True(TestEnvelopes.Read(path).Empty);

        using (var db = _dir.OpenTde("new.db"))
        {
            db.Exec("CREATE TABLE t(x); INSERT INTO t VALUES ('first');");
        }

        Assert.Equal(DatabaseEnvelope.RegionSize + (2 * 8192), new FileInfo(path).Length);
        Assert.False(TestEnvelopes.Read(path).Empty);
        Assert.False(TestEnvelopes.Slot(path, 0)!.Empty);   // both slots: neither may still say "empty"
        Assert.False(TestEnvelopes.Slot(path, 1)!.Empty);
        Assert.True(TestEnvelopes.MacVerifies(path, TestEnvelopes.Read(path)));
        Assert.True(TdeDatabases.Verify(path).Intact);
        using var again = _dir.OpenTde("new.db");
        Assert.Equal("first", again.Scalar<string>("SELECT x FROM t"));
    }

    [Fact]
    public void Two_connections_that_opened_an_empty_database_see_each_others_first_writes()
    {
        using var a = _dir.OpenTde("shared.db");
        using var b = _dir.OpenTde("shared.db");
        Assert.Equal(0L, a.Scalar<long>("SELECT count(*) FROM sqlite_master"));
        Assert.Equal(0L, b.Scalar<long>("SELECT count(*) FROM sqlite_master"));

        b.Exec("CREATE TABLE t(x); INSERT INTO t VALUES ('from b');");
        a.Exec("INSERT INTO t VALUES ('from a');");   // a sees b's table and keeps it

        Assert.Equal(2L, b.Scalar<long>("SELECT count(*) FROM t"));
        Assert.Equal("ok", a.Scalar<string>("PRAGMA integrity_check"));
    }

    // A database with a table and a row, closed.
    private string DatabaseWithData(string name)
    {
        using (var db = _dir.OpenTde(name))
        {
            db.Exec("CREATE TABLE t(x); INSERT INTO t VALUES ('data');");
        }

        return _dir.File(name);
    }

    private static void CutToEnvelope(string path)
    {
        using var raw = File.OpenWrite(path);
        raw.SetLength(DatabaseEnvelope.RegionSize);
    }

    // Opening the file and reading its schema fails; returns SQLite's error (the TDE cause is TdeSqlite.LastError).
    private static SqliteException OpenFails(string path)
    {
        using var db = new SqliteConnection(TdeSqlite.ConnectionString(path));
        return Assert.Throws<SqliteException>(() =>
        {
            db.Open();
            db.Scalar<long>("SELECT count(*) FROM sqlite_master");
        });
    }

    [Fact]
    public void A_database_cut_back_to_its_envelope_is_reported_as_truncated()
    {
        var path = DatabaseWithData("cut.db");
        CutToEnvelope(path);

        var envelope = File.ReadAllBytes(path);
        // Not an empty database (which would let an app start over and write on top): an error.
        var e = OpenFails(path);
        Assert.Equal(TdeStorageException.Codes.PageAuthenticationFailed, TdeSqlite.LastError?.Code);
        Assert.Contains("truncated", TdeSqlite.LastError?.Message, StringComparison.Ordinal);
        Assert.NotEqual(0, e.SqliteErrorCode);

        Assert.Equal(envelope, File.ReadAllBytes(path));   // nothing was written
        var verification = TdeDatabases.Verify(path);
        Assert.False(verification.Intact);
        Assert.True(verification.Truncated);
    }

    [Fact]
    public void A_database_cut_back_to_its_envelope_with_its_newest_slot_damaged_is_still_truncated()
    {
        // The older slot is read when the newer one is damaged: it must not be the one that said "empty".
        var path = DatabaseWithData("cut.db");
        var newest = TestEnvelopes.Read(path).Sequence;
        using (var raw = File.Open(path, FileMode.Open))
        {
            raw.SetLength(DatabaseEnvelope.RegionSize);
            raw.Position = DatabaseEnvelope.SlotOffset(newest) + 20;   // the database id: its SHA-256 fails
            var b = raw.ReadByte();
            raw.Position -= 1;
            raw.WriteByte((byte)(b ^ 0xFF));
        }

        OpenFails(path);
        Assert.Equal(TdeStorageException.Codes.PageAuthenticationFailed, TdeSqlite.LastError?.Code);
        Assert.True(TdeDatabases.Verify(path).Truncated);
    }

    [Fact]
    public void The_empty_mark_is_cleared_without_syncs_too()
    {
        var path = _dir.File("nosync.db");
        using (var db = _dir.OpenTde("nosync.db"))
        {
            db.Exec("PRAGMA synchronous=OFF; CREATE TABLE t(x); INSERT INTO t VALUES ('data');");
            Assert.False(TestEnvelopes.Read(path).Empty);
        }

        Assert.False(TestEnvelopes.Slot(path, 0)!.Empty);
        Assert.False(TestEnvelopes.Slot(path, 1)!.Empty);
    }

    [Fact]
    public void The_empty_mark_cannot_be_set_without_the_DEK()
    {
        var path = DatabaseWithData("cut.db");
        var current = TestEnvelopes.Read(path);
        TestEnvelopes.WriteWithGuessedMac(path, current with { Sequence = current.Sequence + 1, Empty = true });
        CutToEnvelope(path);

        OpenFails(path);
        Assert.Equal(TdeStorageException.Codes.EnvelopeTampered, TdeSqlite.LastError?.Code);
    }

    [Fact]
    public void A_first_transaction_rolled_back_from_its_journal_after_page_1_was_written_leaves_an_empty_database()
    {
        // The files as a crash leaves them between the commit's write of page 1 (which clears the
        // empty mark) and the journal's deletion: the journal of the first transaction, synced
        // before SQLite spilled pages, beside a database that has page 1.
        var path = _dir.File("first.db");
        using (var db = _dir.OpenTde("first.db"))
        {
            db.Exec("PRAGMA cache_size=2; BEGIN; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);" +
                    "INSERT INTO t(v) SELECT hex(randomblob(1500)) FROM " + SqlExtensions.Rows(400));
            Assert.True(new FileInfo(path).Length > DatabaseEnvelope.RegionSize, "the transaction did not spill pages to the file");
            File.Copy(path + "-journal", _dir.File("journal.copy"));
            db.Exec("COMMIT");
        }

        Assert.False(TestEnvelopes.Read(path).Empty);
        File.Copy(_dir.File("journal.copy"), path + "-journal");

        using (var db = _dir.OpenTde("first.db"))
        {
            // SQLite plays the hot journal back: the database had no page before it, so it is emptied.
            Assert.Equal(0L, db.Scalar<long>("SELECT count(*) FROM sqlite_master"));
            Assert.Equal(DatabaseEnvelope.RegionSize, new FileInfo(path).Length);
            Assert.True(TestEnvelopes.Read(path).Empty);
            db.Exec("CREATE TABLE u(x); INSERT INTO u VALUES ('after');");
        }

        Assert.True(TdeDatabases.Verify(path).Intact);
        using var again = _dir.OpenTde("first.db");
        Assert.Equal("after", again.Scalar<string>("SELECT x FROM u"));
    }

    [Fact]
    public void A_first_transaction_that_spilled_pages_and_rolled_back_leaves_an_empty_database()
    {
        var path = _dir.File("first.db");
        using (var db = _dir.OpenTde("first.db"))
        {
            db.Exec("PRAGMA cache_size=2; BEGIN; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);" +
                    "INSERT INTO t(v) SELECT hex(randomblob(1500)) FROM " + SqlExtensions.Rows(400));

            // SQLite spilled later pages; page 1 (held by the open transaction) is a hole of zeros.
            var file = File.ReadAllBytes(path);
            Assert.True(file.Length > DatabaseEnvelope.RegionSize + 4096, "the transaction did not spill pages to the file");
            Assert.False(file.AsSpan(DatabaseEnvelope.RegionSize, 4096).ContainsAnyExcept((byte)0));
            db.Exec("ROLLBACK");

            Assert.Equal(DatabaseEnvelope.RegionSize, new FileInfo(path).Length);
            Assert.True(TestEnvelopes.Read(path).Empty);
            Assert.Equal(0L, db.Scalar<long>("SELECT count(*) FROM sqlite_master"));
            db.Exec("CREATE TABLE u(x); INSERT INTO u VALUES ('after');");
        }

        Assert.True(TdeDatabases.Verify(path).Intact);
        using var again = _dir.OpenTde("first.db");
        Assert.Equal("after", again.Scalar<string>("SELECT x FROM u"));
    }
}
