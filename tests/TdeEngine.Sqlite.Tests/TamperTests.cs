using System.Buffers.Binary;
using Microsoft.Data.Sqlite;
using TdeEngine.Storage.Errors;

namespace TdeEngine.Sqlite.Tests;

/// <summary>Altered, swapped, foreign, renumbered, replayed and missing pages are detected on read and reported with their page number.</summary>
public sealed class TamperTests : IDisposable
{
    private const int Envelope = 4096;
    private const int PageSize = 4096;
    private readonly DatabaseFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    private string MakeDatabase(string name, int rows = 3000)
    {
        using var db = _dir.OpenTde(name);
        db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
        using var tx = db.BeginTransaction();
        for (var i = 0; i < rows; i++)
        {
            db.Exec($"INSERT INTO t(v) VALUES ('row {i} {new string('x', 40)}')");
        }

        tx.Commit();
        return _dir.File(name);
    }

    private static long PhysicalOffset(int page) => Envelope + ((long)(page - 1) * PageSize);

    private TdeStorageException ReadAllFails(string name)
    {
        using var db = new SqliteConnection(TdeSqlite.ConnectionString(_dir.File(name)));
        var e = Assert.Throws<TdeStorageException>(() => TdeSqlite.Explain(() =>
        {
            db.Open();
            return db.Scalar<long>("SELECT sum(length(v)) FROM t");
        }));
        Assert.IsType<SqliteException>(e.InnerException);
        return e;
    }

    [Fact]
    public void A_flipped_bit_names_the_page_and_the_file()
    {
        var file = MakeDatabase("a.db");
        using (var stream = File.Open(file, FileMode.Open))
        {
            stream.Position = PhysicalOffset(5) + 1000;
            var b = stream.ReadByte();
            stream.Position -= 1;
            stream.WriteByte((byte)(b ^ 0x04));
        }

        var e = ReadAllFails("a.db");

        Assert.Equal(TdeStorageException.Codes.PageAuthenticationFailed, e.Code);
        Assert.Equal(5, e.PageNumber);
        Assert.Equal(file, e.File);
        Assert.Contains("Page 5", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Swapped_pages_are_detected()
    {
        var file = MakeDatabase("b.db");
        var bytes = File.ReadAllBytes(file);
        var page3 = bytes.AsSpan((int)PhysicalOffset(3), PageSize).ToArray();
        bytes.AsSpan((int)PhysicalOffset(4), PageSize).CopyTo(bytes.AsSpan((int)PhysicalOffset(3)));
        page3.CopyTo(bytes.AsSpan((int)PhysicalOffset(4)));
        File.WriteAllBytes(file, bytes);

        var e = ReadAllFails("b.db");

        Assert.Equal(TdeStorageException.Codes.PageAuthenticationFailed, e.Code);
        Assert.Contains(e.PageNumber, new long?[] { 3, 4 });
    }

    [Fact]
    public void A_page_pasted_from_another_TDE_database_is_detected()
    {
        var victim = MakeDatabase("victim.db");
        var donor = MakeDatabase("donor.db");
        var donorPage = File.ReadAllBytes(donor).AsSpan((int)PhysicalOffset(6), PageSize).ToArray();
        using (var stream = File.Open(victim, FileMode.Open))
        {
            stream.Position = PhysicalOffset(6);
            stream.Write(donorPage);
        }

        var e = ReadAllFails("victim.db");

        Assert.Equal(6, e.PageNumber);
    }

    [Fact]
    public void Verify_lists_every_bad_page_where_a_query_stops_at_the_first()
    {
        var file = MakeDatabase("v.db");
        var intact = TdeDatabases.Verify(file);
        Assert.True(intact.Intact, intact.Message);
        Assert.Equal((new FileInfo(file).Length - Envelope) / PageSize, intact.PageCount);
        Assert.True(intact.PageCount > 10);
        Assert.Equal("ok", intact.IntegrityCheck);

        var donor = MakeDatabase("donor.db");
        var donorPage = File.ReadAllBytes(donor).AsSpan((int)PhysicalOffset(10), PageSize).ToArray();
        using (var stream = File.Open(file, FileMode.Open))
        {
            foreach (var page in new[] { 3, 7 })
            {
                stream.Position = PhysicalOffset(page) + 100;
                var b = stream.ReadByte();
                stream.Position -= 1;
                stream.WriteByte((byte)(b ^ 0x01));
            }

            stream.Position = PhysicalOffset(10);
            stream.Write(donorPage);
        }

        var result = TdeDatabases.Verify(file);

        Assert.False(result.Intact);
        Assert.Equal([3L, 7L, 10L], result.BadPages);
        Assert.Null(result.IntegrityCheck);
        Assert.Contains("3, 7, 10", result.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void One_damaged_envelope_copy_is_survived_and_two_are_reported()
    {
        var file = MakeDatabase("c.db", rows: 10);
        var bytes = File.ReadAllBytes(file);
        ulong Sequence(int slot) => System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan(slot + 12));
        Assert.True(bytes.AsSpan(0, 8).SequenceEqual("TDESQLv1"u8) && bytes.AsSpan(2048, 8).SequenceEqual("TDESQLv1"u8),
            "both envelope slots are written once the first writer reserves its seals");
        var newest = Sequence(0) > Sequence(2048) ? 0 : 2048;

        bytes[newest + 100] ^= 0xFF;
        File.WriteAllBytes(file, bytes);
        using (var db = _dir.OpenTde("c.db"))
        {
            Assert.Equal(10L, db.Scalar<long>("SELECT count(*) FROM t"));
        }

        bytes = File.ReadAllBytes(file);
        bytes[(2048 - newest) + 100] ^= 0xFF;   // now the older copy too
        File.WriteAllBytes(file, bytes);
        var e = OpenFails("c.db");
        Assert.Equal(TdeStorageException.Codes.EnvelopeDamaged, e.Code);
        Assert.Contains("backup", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_plaintext_WAL_planted_beside_a_TDE_database_is_never_applied()
    {
        MakeDatabase("victim.db", rows: 20);
        using (var plain = _dir.OpenPlain("plain.db"))
        {
            plain.Exec("PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);");
            plain.Exec("INSERT INTO t(v) VALUES ('planted by an attacker')");
            File.Copy(_dir.File("plain.db-wal"), _dir.File("victim.db-wal"));
        }

        using var db = _dir.OpenTde("victim.db");
        Assert.Equal(20L, db.Scalar<long>("SELECT count(*) FROM t"));
        Assert.Equal(0L, db.Scalar<long>("SELECT count(*) FROM t WHERE v LIKE 'planted%'"));
        Assert.Equal("ok", db.Scalar<string>("PRAGMA integrity_check"));
    }

    [Fact]
    public void An_altered_hot_journal_is_reported_instead_of_played_back()
    {
        using (var db = _dir.OpenTde("j.db"))
        {
            db.Exec("PRAGMA cache_size=10; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);");
            db.Exec("WITH x(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM x WHERE n < 400) INSERT INTO t(v) SELECT 'before ' || n FROM x");
            using var tx = db.BeginTransaction();
            db.Exec("UPDATE t SET v = 'during ' || hex(randomblob(300))");
            File.Copy(_dir.File("j.db"), _dir.File("crashed.db"));
            File.Copy(_dir.File("j.db-journal"), _dir.File("crashed.db-journal"));
            tx.Rollback();
        }

        using (var journal = File.Open(_dir.File("crashed.db-journal"), FileMode.Open))
        {
            journal.Position = 4096 + 4 + 2000;   // inside the first page image (after the 4 KiB header and its page number)
            var b = journal.ReadByte();
            journal.Position -= 1;
            journal.WriteByte((byte)(b ^ 0x01));
        }

        var e = OpenFails("crashed.db", query: true);
        Assert.Equal(TdeStorageException.Codes.PageAuthenticationFailed, e.Code);
        Assert.EndsWith("crashed.db-journal", e.File, StringComparison.Ordinal);
    }

    // A hot rollback journal: [ header 512 ][ pgno 4 | sealed image P | checksum 4 ] ...
    private const int JournalRecord = 4 + PageSize + 4;

    /// <summary>
    /// A database with two small tables and a filler, and a hot journal of a transaction that
    /// changed both and spilled (the database file holds the uncommitted pages): copies
    /// <c>{prefix}.db</c> and <c>{prefix}.db-journal</c> taken mid-transaction. Returns the root pages.
    /// </summary>
    private (long RootA, long RootB) MakeHotJournal(string name, string committedValue, params string[] prefixes)
    {
        using var db = _dir.OpenTde(name);
        db.Exec("PRAGMA cache_size=10; CREATE TABLE IF NOT EXISTS accounts(id INTEGER PRIMARY KEY, v TEXT); CREATE TABLE IF NOT EXISTS archive(id INTEGER PRIMARY KEY, v TEXT); CREATE TABLE IF NOT EXISTS filler(id INTEGER PRIMARY KEY, v TEXT);");
        db.Exec($"INSERT OR REPLACE INTO accounts VALUES (1,'alice {committedValue}'),(2,'bob {committedValue}')");
        db.Exec("INSERT OR REPLACE INTO archive VALUES (1,'ARCHIVED mallory'),(2,'ARCHIVED eve')");
        db.Exec("WITH x(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM x WHERE n < 400) INSERT OR REPLACE INTO filler(id, v) SELECT n, 'before ' || n FROM x");
        var roots = (db.Scalar<long>("SELECT rootpage FROM sqlite_schema WHERE name='accounts'"), db.Scalar<long>("SELECT rootpage FROM sqlite_schema WHERE name='archive'"));
        using var tx = db.BeginTransaction();
        db.Exec("UPDATE accounts SET v = v || ' (pending)'; UPDATE archive SET v = v || ' (pending)';");
        db.Exec("UPDATE filler SET v = 'during ' || hex(randomblob(300))");   // spills: the journal is synced and the file written
        foreach (var prefix in prefixes)
        {
            File.Copy(_dir.File(name), _dir.File(prefix + ".db"), overwrite: true);
            File.Copy(_dir.File(name + "-journal"), _dir.File(prefix + ".db-journal"), overwrite: true);
        }

        tx.Rollback();
        return roots;
    }

    private static int JournalRecordOf(byte[] journal, long pageNumber)
    {
        var sectorSize = (int)BinaryPrimitives.ReadUInt32BigEndian(journal.AsSpan(20));
        for (var at = sectorSize; at + JournalRecord <= journal.Length; at += JournalRecord)
        {
            if (BinaryPrimitives.ReadUInt32BigEndian(journal.AsSpan(at)) == pageNumber)
            {
                return at;
            }
        }

        throw new InvalidOperationException($"page {pageNumber} has no record in the journal");
    }

    private string Accounts(string name)
    {
        using var db = new SqliteConnection(TdeSqlite.ConnectionString(_dir.File(name)));
        return TdeSqlite.Explain(() =>
        {
            db.Open();
            return db.Scalar<string>("SELECT group_concat(v, ' | ') FROM (SELECT v FROM accounts ORDER BY id)")!;
        });
    }

    [Fact]
    public void A_hot_journal_rolls_back_and_swapped_record_page_numbers_are_reported()
    {
        var (rootA, rootB) = MakeHotJournal("j.db", "100", "intact", "crashed");
        var journal = File.ReadAllBytes(_dir.File("crashed.db-journal"));
        var atA = JournalRecordOf(journal, rootA);
        var atB = JournalRecordOf(journal, rootB);

        // The page numbers are plaintext and outside SQLite's record checksum: swap them.
        BinaryPrimitives.WriteUInt32BigEndian(journal.AsSpan(atA), (uint)rootB);
        BinaryPrimitives.WriteUInt32BigEndian(journal.AsSpan(atB), (uint)rootA);
        File.WriteAllBytes(_dir.File("crashed.db-journal"), journal);

        Assert.Equal("alice 100 | bob 100", Accounts("intact.db"));   // the untouched copy rolls back
        var e = Assert.Throws<TdeStorageException>(() => Accounts("crashed.db"));
        Assert.Equal(TdeStorageException.Codes.PageAuthenticationFailed, e.Code);
        Assert.EndsWith("crashed.db-journal", e.File, StringComparison.Ordinal);
        Assert.Contains($"offset {Math.Min(atA, atB) + 4}", e.Message, StringComparison.Ordinal);   // the first record played back
    }

    [Fact]
    public void A_journal_image_replayed_from_an_older_journal_is_reported()
    {
        var (rootA, _) = MakeHotJournal("j.db", "100", "older");
        MakeHotJournal("j.db", "200", "crashed");
        var older = File.ReadAllBytes(_dir.File("older.db-journal"));
        var journal = File.ReadAllBytes(_dir.File("crashed.db-journal"));
        var at = JournalRecordOf(journal, rootA);
        Assert.Equal(at, JournalRecordOf(older, rootA));   // same page at the same offset

        // The older image (alice 100) with its checksum moved to the new journal's cksumInit (header bytes 12..15).
        older.AsSpan(at, JournalRecord).CopyTo(journal.AsSpan(at));
        var checksum = BinaryPrimitives.ReadUInt32BigEndian(older.AsSpan(at + 4 + PageSize))
            - BinaryPrimitives.ReadUInt32BigEndian(older.AsSpan(12)) + BinaryPrimitives.ReadUInt32BigEndian(journal.AsSpan(12));
        BinaryPrimitives.WriteUInt32BigEndian(journal.AsSpan(at + 4 + PageSize), checksum);
        File.WriteAllBytes(_dir.File("crashed.db-journal"), journal);

        var e = Assert.Throws<TdeStorageException>(() => Accounts("crashed.db"));
        Assert.Equal(TdeStorageException.Codes.PageAuthenticationFailed, e.Code);
        Assert.EndsWith("crashed.db-journal", e.File, StringComparison.Ordinal);
    }

    // A WAL: [ header 32 ][ frame header 24 | sealed body P ] ...; checksums are little-endian on x86.
    private const int WalFrame = 24 + PageSize;

    // SQLite's WAL checksum is linear: what a change of (d1, d2) in the running sums, or of the first
    // word of a frame, adds to the checksum after 8 + P bytes. An attacker needs no plaintext for it.
    private static (uint, uint) ChecksumDelta(uint d1, uint d2, uint word0)
    {
        for (var i = 0; i < (8 + PageSize) / 4; i += 2)
        {
            d1 += (i == 0 ? word0 : 0u) + d2;
            d2 += d1;
        }

        return (d1, d2);
    }

    [Fact]
    public void Swapped_page_numbers_in_WAL_frames_are_never_applied()
    {
        long rootA, rootB;
        using (var db = _dir.OpenTde("w.db"))
        {
            db.Exec("PRAGMA journal_mode=WAL; CREATE TABLE accounts(id INTEGER PRIMARY KEY, v TEXT); CREATE TABLE archive(id INTEGER PRIMARY KEY, v TEXT);");
            db.Exec("INSERT INTO accounts VALUES (1,'alice 100'),(2,'bob 200'); INSERT INTO archive VALUES (1,'ARCHIVED mallory'),(2,'ARCHIVED eve');");
            db.Exec("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA wal_autocheckpoint=0;");
            rootA = db.Scalar<long>("SELECT rootpage FROM sqlite_schema WHERE name='accounts'");
            rootB = db.Scalar<long>("SELECT rootpage FROM sqlite_schema WHERE name='archive'");
            db.Exec("BEGIN; UPDATE accounts SET v = v || ' (v2)'; UPDATE archive SET v = v || ' (v2)'; COMMIT;");
            File.Copy(_dir.File("w.db"), _dir.File("crashed.db"));
            File.Copy(_dir.File("w.db-wal"), _dir.File("crashed.db-wal"));   // no -shm: the next open recovers the WAL
        }

        var wal = File.ReadAllBytes(_dir.File("crashed.db-wal"));
        Assert.Equal(0x377f0682u, BinaryPrimitives.ReadUInt32BigEndian(wal));
        var frames = (wal.Length - 32) / WalFrame;
        uint d1 = 0, d2 = 0;
        for (var k = 0; k < frames; k++)
        {
            var at = 32 + (k * WalFrame);
            var pgno = BinaryPrimitives.ReadUInt32BigEndian(wal.AsSpan(at));
            var swapped = pgno == rootA ? (uint)rootB : pgno == rootB ? (uint)rootA : pgno;
            BinaryPrimitives.WriteUInt32BigEndian(wal.AsSpan(at), swapped);
            var (e1, e2) = ChecksumDelta(d1, d2, BinaryPrimitives.ReverseEndianness(swapped) - BinaryPrimitives.ReverseEndianness(pgno));
            BinaryPrimitives.WriteUInt32BigEndian(wal.AsSpan(at + 16), BinaryPrimitives.ReadUInt32BigEndian(wal.AsSpan(at + 16)) + e1);
            BinaryPrimitives.WriteUInt32BigEndian(wal.AsSpan(at + 20), BinaryPrimitives.ReadUInt32BigEndian(wal.AsSpan(at + 20)) + e2);
            (d1, d2) = (e1, e2);
        }

        File.WriteAllBytes(_dir.File("crashed.db-wal"), wal);

        // Recovery stops at the first frame that does not authenticate: the transaction is dropped, as a torn one would be.
        Assert.Equal("alice 100 | bob 200", Accounts("crashed.db"));
        using var check = _dir.OpenTde("crashed.db");
        Assert.Equal("ok", check.Scalar<string>("PRAGMA integrity_check"));
    }

    [Fact]
    public void A_WAL_frame_replayed_from_an_older_WAL_generation_is_never_applied()
    {
        using (var db = _dir.OpenTde("w.db"))
        {
            db.Exec("PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE accounts(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO accounts VALUES (1, 'alice 100');");
            db.Exec("PRAGMA wal_checkpoint(TRUNCATE)");
            db.Exec("UPDATE accounts SET v = 'alice 1'");   // generation 1
            File.Copy(_dir.File("w.db"), _dir.File("crashed.db"));   // still 'alice 100': nothing checkpointed since
            File.Copy(_dir.File("w.db"), _dir.File("control.db"));
            File.Copy(_dir.File("w.db-wal"), _dir.File("older.wal"));
            db.Exec("PRAGMA wal_checkpoint(TRUNCATE)");
            db.Exec("UPDATE accounts SET v = 'alice 2'");   // generation 2: the same page at the same offset, new salts
            File.Copy(_dir.File("w.db-wal"), _dir.File("crashed.db-wal"));
            File.Copy(_dir.File("w.db-wal"), _dir.File("control.db-wal"));
        }

        var older = File.ReadAllBytes(_dir.File("older.wal"));
        var wal = File.ReadAllBytes(_dir.File("crashed.db-wal"));
        Assert.Equal(32 + WalFrame, older.Length);
        Assert.Equal(32 + WalFrame, wal.Length);
        Assert.False(older.AsSpan(16, 8).SequenceEqual(wal.AsSpan(16, 8)));   // the salts changed

        // The older frame with today's salts, its checksum moved to today's WAL header checksum.
        var frame = older.AsSpan(32, WalFrame).ToArray();
        wal.AsSpan(32 + 8, 8).CopyTo(frame.AsSpan(8));
        var (e1, e2) = ChecksumDelta(BinaryPrimitives.ReadUInt32BigEndian(wal.AsSpan(24)) - BinaryPrimitives.ReadUInt32BigEndian(older.AsSpan(24)),
            BinaryPrimitives.ReadUInt32BigEndian(wal.AsSpan(28)) - BinaryPrimitives.ReadUInt32BigEndian(older.AsSpan(28)), 0);
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(16), BinaryPrimitives.ReadUInt32BigEndian(frame.AsSpan(16)) + e1);
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(20), BinaryPrimitives.ReadUInt32BigEndian(frame.AsSpan(20)) + e2);
        frame.CopyTo(wal.AsSpan(32));
        File.WriteAllBytes(_dir.File("crashed.db-wal"), wal);

        Assert.Equal("alice 2", Accounts("control.db"));   // the untouched WAL recovers
        Assert.Equal("alice 100", Accounts("crashed.db")); // the replayed frame ('alice 1') is dropped
    }

    private string MakeBlobDatabase(string name)
    {
        var blob = new byte[20000];
        new Random(1).NextBytes(blob);
        using var db = _dir.OpenTde(name);
        db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
        using var insert = db.CreateCommand();
        insert.CommandText = "INSERT INTO t(v) VALUES ($b)";
        insert.Parameters.AddWithValue("$b", blob);
        insert.ExecuteNonQuery();
        return _dir.File(name);
    }

    [Fact]
    public void A_file_cut_inside_its_last_page_is_reported_not_read_as_zeros()
    {
        var file = MakeBlobDatabase("t.db");
        var pages = (new FileInfo(file).Length - Envelope) / PageSize;
        using (var stream = File.Open(file, FileMode.Open))
        {
            stream.SetLength(stream.Length - 1);   // one byte of the last page's tag
        }

        var e = ReadAllFails("t.db");
        var verify = TdeDatabases.Verify(file);

        Assert.Equal(TdeStorageException.Codes.PageAuthenticationFailed, e.Code);
        Assert.Contains("truncated", e.Message, StringComparison.Ordinal);
        Assert.False(verify.Intact);
        Assert.Equal(pages, verify.PageCount);
        Assert.Equal([pages], verify.BadPages);
        Assert.Equal(pages, verify.HeaderPageCount);
    }

    [Fact]
    public void A_file_cut_by_a_whole_page_is_a_typed_error_and_verify_says_truncated()
    {
        var file = MakeBlobDatabase("t.db");
        var pages = (new FileInfo(file).Length - Envelope) / PageSize;
        using (var stream = File.Open(file, FileMode.Open))
        {
            stream.SetLength(stream.Length - PageSize);
        }

        var e = ReadAllFails("t.db");
        var verify = TdeDatabases.Verify(file);

        Assert.Equal(TdeStorageException.Codes.PageAuthenticationFailed, e.Code);
        Assert.Equal(pages, e.PageNumber);
        Assert.Contains("truncated", e.Message, StringComparison.Ordinal);
        Assert.False(verify.Intact);
        Assert.True(verify.Truncated);
        Assert.Equal(pages - 1, verify.PageCount);
        Assert.Equal(pages, verify.HeaderPageCount);
        Assert.Empty(verify.BadPages);
        Assert.Contains("truncated", verify.Message, StringComparison.Ordinal);
    }

    private TdeStorageException OpenFails(string name, bool query)
    {
        using var db = new SqliteConnection(TdeSqlite.ConnectionString(_dir.File(name)));
        return Assert.Throws<TdeStorageException>(() => TdeSqlite.Explain(() =>
        {
            db.Open();
            return query ? db.Scalar<long>("SELECT count(*) FROM t") : 0;
        }));
    }

    private TdeStorageException OpenFails(string name)
    {
        using var db = new SqliteConnection(TdeSqlite.ConnectionString(_dir.File(name)));
        return Assert.Throws<TdeStorageException>(() => TdeSqlite.Explain(() =>
        {
            db.Open();
            return 0;
        }));
    }
}
