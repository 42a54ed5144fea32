using Microsoft.Data.Sqlite;
using TdeEngine.Storage.Errors;

namespace TdeEngine.Sqlite.Tests;

/// <summary>Altered, swapped and foreign pages are detected on read and reported with their page number.</summary>
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
