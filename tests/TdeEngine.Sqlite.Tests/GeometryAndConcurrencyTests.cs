using Microsoft.Data.Sqlite;

namespace TdeEngine.Sqlite.Tests;

/// <summary>Cipher suites, page sizes, several connections and threads, and WAL recovery.</summary>
public sealed class GeometryAndConcurrencyTests : IDisposable
{
    private readonly DatabaseFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData("aes-256-gcm", 4096, 32)]
    [InlineData("aegis-256", 4096, 68)]
    [InlineData("aes-256-gcm", 1024, 32)]
    [InlineData("aegis-256", 16384, 68)]
    [InlineData("aes-256-gcm", 65536, 32)]
    public void Each_cipher_suite_and_page_size_round_trips_with_its_reserve(string cipher, int pageSize, int reserve)
    {
        using (var db = _dir.OpenTde("g.db", $"cipher={cipher}&page_size={pageSize}"))
        {
            Assert.Equal(pageSize, db.Scalar<long>("PRAGMA page_size"));
            Chinook.Load(db);
        }

        using (var db = _dir.OpenTde("g.db"))
        {
            Assert.Equal(3503L, db.Scalar<long>("SELECT count(*) FROM Track"));
            Assert.Equal("ok", db.Scalar<string>("PRAGMA integrity_check"));
        }

        var bytes = File.ReadAllBytes(_dir.File("g.db"));
        Assert.Equal(0, (bytes.Length - 4096) % pageSize);
        Assert.Equal(reserve, bytes[2048 + 40]);   // the envelope (slot B, sequence 1) records the reserve
    }

    [Fact]
    public void Memory_mapped_IO_never_bypasses_decryption()
    {
        using var db = _dir.OpenTde("m.db");
        db.Exec("PRAGMA mmap_size=268435456");   // SQLite would map the file if the VFS offered xFetch
        Chinook.Load(db);

        Assert.Equal(3503L, db.Scalar<long>("SELECT count(*) FROM Track"));
        Assert.Equal("AC/DC", db.Scalar<string>("SELECT Name FROM Artist WHERE ArtistId = 1"));
        Assert.Equal("ok", db.Scalar<string>("PRAGMA integrity_check"));
    }

    [Fact]
    public void Page_size_cannot_be_changed_by_VACUUM()
    {
        using var db = _dir.OpenTde("p.db");
        db.Exec("CREATE TABLE t(x); INSERT INTO t VALUES (1);");

        db.Exec("PRAGMA page_size=8192");
        var e = Assert.Throws<SqliteException>(() => db.Exec("VACUUM"));

        Assert.Equal(10, e.SqliteErrorCode);
        Assert.Equal(Storage.Errors.TdeStorageException.Codes.UnsupportedOperation, TdeSqlite.LastError!.Code);
        using var again = _dir.OpenTde("p.db");
        Assert.Equal(1L, again.Scalar<long>("SELECT count(*) FROM t"));
        Assert.Equal("ok", again.Scalar<string>("PRAGMA integrity_check"));
    }

    [Theory]
    [InlineData("DELETE")]
    [InlineData("WAL")]
    public void Several_connections_on_several_threads_read_and_write_one_database(string journalMode)
    {
        using (var setup = _dir.OpenTde("c.db"))
        {
            setup.Exec($"PRAGMA journal_mode={journalMode}; CREATE TABLE t(id INTEGER PRIMARY KEY, worker INT, v TEXT);");
        }

        var errors = new System.Collections.Concurrent.ConcurrentQueue<Exception>();
        Parallel.For(0, 4, new ParallelOptions { MaxDegreeOfParallelism = 4 }, worker =>
        {
            try
            {
                using var db = new SqliteConnection(TdeSqlite.ConnectionString(_dir.File("c.db")) + ";Default Timeout=60");
                db.Open();
                db.Exec("PRAGMA busy_timeout=60000");
                for (var batch = 0; batch < 20; batch++)
                {
                    using (var tx = db.BeginTransaction())
                    {
                        for (var i = 0; i < 25; i++)
                        {
                            db.Exec($"INSERT INTO t(worker, v) VALUES ({worker}, 'w{worker}-b{batch}-{i}-{new string('z', 100)}')");
                        }

                        tx.Commit();
                    }

                    Assert.True(db.Scalar<long>($"SELECT count(*) FROM t WHERE worker = {worker}") >= (batch + 1) * 25);
                }
            }
            catch (Exception e)
            {
                errors.Enqueue(e);
            }
        });

        Assert.Empty(errors);
        using var check = _dir.OpenTde("c.db");
        Assert.Equal(4 * 20 * 25L, check.Scalar<long>("SELECT count(*) FROM t"));
        Assert.Equal("ok", check.Scalar<string>("PRAGMA integrity_check"));
    }

    [Fact]
    public void A_WAL_left_by_a_crash_is_recovered_with_every_committed_row()
    {
        // Copy the database and its WAL while a writer holds them (nothing checkpointed): the copy is
        // what a crash leaves behind. Recovery must read the sealed frames back with valid checksums.
        using (var db = _dir.OpenTde("w.db"))
        {
            db.Exec("PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);");
            for (var i = 0; i < 300; i++)
            {
                db.Exec($"INSERT INTO t(v) VALUES ('committed {i}')");
            }

            Assert.True(new FileInfo(_dir.File("w.db-wal")).Length > 300 * 4096);
            File.Copy(_dir.File("w.db"), _dir.File("crashed.db"));
            File.Copy(_dir.File("w.db-wal"), _dir.File("crashed.db-wal"));
        }

        using var recovered = _dir.OpenTde("crashed.db");
        Assert.Equal(300L, recovered.Scalar<long>("SELECT count(*) FROM t"));
        Assert.Equal("committed 299", recovered.Scalar<string>("SELECT v FROM t ORDER BY id DESC LIMIT 1"));
        Assert.Equal("ok", recovered.Scalar<string>("PRAGMA integrity_check"));
    }

    [Fact]
    public void A_hot_rollback_journal_left_by_a_crash_is_rolled_back()
    {
        // Copy the database and its journal in the middle of a large transaction (pages already
        // spilled to the database file): opening the copy must roll the transaction back.
        using (var db = _dir.OpenTde("j.db"))
        {
            db.Exec("PRAGMA cache_size=10; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);");
            db.Exec("WITH x(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM x WHERE value < 500) INSERT INTO t(v) SELECT 'before ' || value FROM x");
            using var tx = db.BeginTransaction();
            db.Exec("UPDATE t SET v = 'during ' || id || ' ' || hex(randomblob(200))");
            Assert.True(File.Exists(_dir.File("j.db-journal")));
            File.Copy(_dir.File("j.db"), _dir.File("crashed.db"));
            File.Copy(_dir.File("j.db-journal"), _dir.File("crashed.db-journal"));
            tx.Rollback();
        }

        using var recovered = _dir.OpenTde("crashed.db");
        Assert.Equal(500L, recovered.Scalar<long>("SELECT count(*) FROM t WHERE v LIKE 'before %'"));
        Assert.Equal("ok", recovered.Scalar<string>("PRAGMA integrity_check"));
        Assert.False(File.Exists(_dir.File("crashed.db-journal")) && new FileInfo(_dir.File("crashed.db-journal")).Length > 0);
    }
}
