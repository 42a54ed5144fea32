using System.Buffers.Binary;
using Microsoft.Data.Sqlite;
using TdeEngine.Storage.Errors;

// Regressions found by the 2026-11-29 reviews of the storage fixes: one class per behaviour.

namespace TdeEngine.Sqlite.Tests;

/// <summary>
/// The side-by-side benchmark's workload (bench/TdeEngine.Benchmarks/SideBySide.cs), smaller: many
/// transactions through a small page cache, so pages are read back from the WAL and checkpointed
/// while the next transactions write.
/// </summary>
public sealed class WalWorkloadTests : IDisposable
{
    private readonly DatabaseFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData("WAL", "aes-256-gcm")]
    [InlineData("WAL", "aegis-256")]
    [InlineData("DELETE", "aes-256-gcm")]
    public void Inserts_reads_scans_and_updates_through_a_small_cache_all_succeed(string journalMode, string cipher)
    {
        var path = Path.Combine(_dir.Path, "w.db");
        using var db = new SqliteConnection($"Data Source=file:{path}?vfs=tde&cipher={cipher};Pooling=False");
        db.Open();
        void Exec(string sql)
        {
            using var c = db.CreateCommand();
            c.CommandText = sql;
            c.ExecuteNonQuery();
        }

        Exec($"PRAGMA journal_mode={journalMode}; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-256; " +
             "CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER NOT NULL, v TEXT NOT NULL); CREATE INDEX t_k ON t(k);");
        const int rows = 30_000;
        try
        {
            using (var insert = db.CreateCommand())
            {
                insert.CommandText = "INSERT INTO t(k, v) VALUES ($k, $v)";
                var k = insert.Parameters.Add("$k", SqliteType.Integer);
                var v = insert.Parameters.Add("$v", SqliteType.Text);
                for (var i = 0; i < rows; i += 1000)
                {
                    using var tx = db.BeginTransaction();
                    insert.Transaction = tx;
                    for (var j = i; j < i + 1000; j++)
                    {
                        k.Value = (j * 7919L) % rows;
                        v.Value = $"row {j:D8} " + new string((char)('a' + (j % 26)), 50);
                        insert.ExecuteNonQuery();
                    }

                    tx.Commit();
                }
            }

            var random = new Random(42);
            using (var update = db.CreateCommand())
            {
                update.CommandText = "UPDATE t SET v = $v WHERE id = $id";
                var id = update.Parameters.Add("$id", SqliteType.Integer);
                var v = update.Parameters.Add("$v", SqliteType.Text);
                for (var i = 0; i < 10_000; i += 1000)
                {
                    using var tx = db.BeginTransaction();
                    update.Transaction = tx;
                    for (var j = i; j < i + 1000; j++)
                    {
                        id.Value = random.Next(1, rows + 1);
                        v.Value = $"updated {j:D8} " + new string('u', 46);
                        update.ExecuteNonQuery();
                    }

                    tx.Commit();
                }
            }
        }
        catch (SqliteException e)
        {
            Assert.Fail($"{e.Message}; TDE cause: {TdeSqlite.LastError?.Code}: {TdeSqlite.LastError?.Message}");
        }

        using var check = db.CreateCommand();
        check.CommandText = "PRAGMA integrity_check";
        Assert.Equal("ok", check.ExecuteScalar());
        check.CommandText = "SELECT count(*) FROM t";
        Assert.Equal((long)rows, check.ExecuteScalar());
    }
}

/// <summary>
/// A connection that created a new database file and wrote nothing (a pooled health check, say)
/// must still see what other connections wrote, and must not lay a new schema over it.
/// </summary>
public sealed class FreshDatabaseTests : IDisposable
{
    private readonly DatabaseFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData("DELETE")]
    [InlineData("WAL")]
    public void A_connection_that_created_the_file_sees_and_keeps_what_another_connection_wrote(string mode)
    {
        using var first = _dir.OpenTde("n.db");   // creates the file; writes nothing yet
        using (var other = _dir.OpenTde("n.db"))
        {
            other.Exec($"PRAGMA journal_mode={mode}");
            other.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
            other.Exec("INSERT INTO t(v) VALUES ('written by the other connection')");
        }

        Assert.Equal("written by the other connection", first.Scalar<string>("SELECT v FROM t"));
        first.Exec("CREATE TABLE u(x)");

        using var check = _dir.OpenTde("n.db");
        Assert.Equal("ok", check.Scalar<string>("PRAGMA integrity_check"));
        Assert.Equal("t,u", check.Scalar<string>("SELECT group_concat(name) FROM (SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name)"));
        Assert.Equal(mode.ToLowerInvariant(), check.Scalar<string>("PRAGMA journal_mode"));
    }
}

/// <summary>psow=0 makes SQLite write parts of WAL frames and unmarked journal headers: refused with a typed error.</summary>
public sealed class PowersafeOverwriteTests : IDisposable
{
    private readonly DatabaseFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData("psow=0")]
    [InlineData("psow=off")]
    public void A_TDE_database_opened_without_powersafe_overwrite_is_refused_before_anything_is_created(string parameter)
    {
        var path = Path.Combine(_dir.Path, "p.db");
        using var db = new SqliteConnection($"Data Source=file:{path}?vfs=tde&{parameter};Pooling=False");

        Assert.Throws<SqliteException>(db.Open);

        Assert.Equal("Tde.UnsupportedOperation", TdeSqlite.LastError?.Code);
        Assert.Contains("psow", TdeSqlite.LastError?.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void Psow_1_opens_as_the_default_does()
    {
        var path = Path.Combine(_dir.Path, "q.db");
        using var db = new SqliteConnection($"Data Source=file:{path}?vfs=tde&psow=1;Pooling=False");
        db.Open();
        using var c = db.CreateCommand();
        c.CommandText = "PRAGMA journal_mode=WAL";
        Assert.Equal("wal", c.ExecuteScalar());
        c.CommandText = "CREATE TABLE t(x); INSERT INTO t VALUES (1); SELECT count(*) FROM t;";
        Assert.Equal(1L, c.ExecuteScalar());
    }
}

/// <summary>From review: checkpoints, WAL rewrites and connections that change journal mode.</summary>
public sealed class WalCheckpointRaceTests : IDisposable
{
    private readonly DatabaseFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    // A connection that last read in rollback mode reads page 1's change counter before it notices
    // the WAL, while another connection's checkpoint has written page 1 (with the new page count) but
    // not yet the pages that grow the file: not a truncated file.
    [Fact]
    public void A_rollback_reader_meeting_a_checkpoint_that_grows_the_file_is_not_told_it_is_truncated()
    {
        using var b = _dir.OpenTde("g.db");
        b.Exec("PRAGMA journal_mode=DELETE; CREATE TABLE t(x BLOB); INSERT INTO t VALUES (randomblob(100));");
        var failures = new List<string>();
        for (var iter = 0; iter < 20 && failures.Count == 0; iter++)
        {
            b.Exec("PRAGMA journal_mode=DELETE");
            using var a = _dir.OpenTde("g.db");
            a.Scalar<long>("SELECT count(*) FROM t");
            b.Exec("PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;");
            b.Exec("BEGIN; INSERT INTO t SELECT randomblob(3000) FROM (WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<3000) SELECT i FROM c); COMMIT;");
            var started = new ManualResetEventSlim();
            var ckpt = new Thread(() => { started.Set(); b.Exec("PRAGMA wal_checkpoint(PASSIVE)"); });
            ckpt.Start();
            started.Wait();
            Thread.Sleep(2 + iter % 5);
            try
            {
                a.Scalar<long>("SELECT count(*) FROM t");
            }
            catch (SqliteException e)
            {
                failures.Add($"iter {iter}: {e.Message}; TDE: {TdeSqlite.LastError?.Code}: {TdeSqlite.LastError?.Message}");
            }

            ckpt.Join();
        }

        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    // Spilled frames rewritten in the same transaction (zero salts until commit), a savepoint rolled
    // back, more writes, commit; then a copy of db and WAL is opened (recovery reads whole frames).
    [Fact]
    public void Rewritten_frames_savepoint_rollback_then_recovery()
    {
        using var w = _dir.OpenTde("s.db");
        w.Exec("PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; PRAGMA cache_size=5; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);");
        w.Exec("INSERT INTO t(v) SELECT randomblob(500) FROM (WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<400) SELECT i FROM c)");
        for (var round = 0; round < 3; round++)
        {
            w.Exec("BEGIN; UPDATE t SET v = randomblob(500) WHERE id % 3 = 0; UPDATE t SET v = randomblob(500) WHERE id % 2 = 0; SAVEPOINT s; " +
                   "UPDATE t SET v = randomblob(500) WHERE id % 5 = 0; INSERT INTO t(v) SELECT randomblob(700) FROM t WHERE id < 100; UPDATE t SET v = randomblob(500); ROLLBACK TO s; " +
                   "UPDATE t SET v = randomblob(400) WHERE id % 7 = 0; UPDATE t SET v = randomblob(400) WHERE id % 7 = 0; COMMIT;");
        }

        w.Exec("BEGIN; UPDATE t SET v = randomblob(500); UPDATE t SET v = randomblob(500); ROLLBACK;");
        w.Exec("BEGIN; UPDATE t SET v = randomblob(300) WHERE id < 50; UPDATE t SET v = randomblob(300) WHERE id < 300; COMMIT;");
        var expected = w.Scalar<long>("SELECT sum(length(v)) FROM t");
        Assert.Equal("ok", w.Scalar<string>("PRAGMA integrity_check"));
        File.Copy(_dir.File("s.db"), _dir.File("c.db"));
        File.Copy(_dir.File("s.db-wal"), _dir.File("c.db-wal"));
        using var c = _dir.OpenTde("c.db");
        Assert.Equal("ok", c.Scalar<string>("PRAGMA integrity_check"));
        Assert.Equal(expected, c.Scalar<long>("SELECT sum(length(v)) FROM t"));
    }
}

/// <summary>
/// A WAL body read alone is read together with its frame header, and a body written alone is bound
/// from the frame header its handle wrote (2026-11-29, performance): the binding must stay exact
/// when several connections write the same WAL in turn and restart it.
/// </summary>
public sealed class WalFrameBindingTests : IDisposable
{
    private const int PageSize = 4096;
    private const int WalFrame = 24 + PageSize;
    private readonly DatabaseFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    // A committed frame read through the wal-index by a connection that did not write it.
    private TdeStorageException ReadFails(string name)
    {
        using var db = new SqliteConnection(TdeSqlite.ConnectionString(_dir.File(name)));
        var e = Assert.Throws<TdeStorageException>(() => TdeSqlite.Explain(() =>
        {
            db.Open();
            return db.Scalar<string>("SELECT group_concat(v) FROM t");
        }));
        Assert.IsType<SqliteException>(e.InnerException);
        return e;
    }

    private static void Patch(string walPath, long at, Action<Span<byte>> change)
    {
        using var wal = new FileStream(walPath, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
        var bytes = new byte[8];
        wal.Position = at;
        wal.ReadExactly(bytes);
        change(bytes);
        wal.Position = at;
        wal.Write(bytes);
    }

    [Theory]
    [InlineData("body")]
    [InlineData("page number")]
    public void A_committed_frame_altered_under_a_live_database_fails_with_its_page(string what)
    {
        using var writer = _dir.OpenTde("live.db");
        writer.Exec("PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);");
        writer.Exec("PRAGMA wal_checkpoint(TRUNCATE)");
        writer.Exec("INSERT INTO t(v) VALUES ('alice'), ('bob')");   // one frame: the table's page
        var wal = _dir.File("live.db-wal");
        Assert.Equal(32 + WalFrame, new FileInfo(wal).Length);
        var page = BinaryPrimitives.ReadUInt32BigEndian(File.ReadAllBytes(wal).AsSpan(32));
        Assert.Equal("alice,bob", writer.Scalar<string>("SELECT group_concat(v) FROM t"));

        if (what == "body")
        {
            Patch(wal, 32 + 24 + 100, b => b[0] ^= 1);
        }
        else
        {
            // Another page's number in the header: SQLite reads the frame by its place in the wal-index,
            // so only the binding notices.
            Patch(wal, 32, b => BinaryPrimitives.WriteUInt32BigEndian(b, page + 1));
        }

        var e = ReadFails("live.db");
        Assert.Equal(TdeStorageException.Codes.PageAuthenticationFailed, e.Code);
        Assert.Contains("WAL frame 0", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Connections_taking_turns_through_WAL_restarts_and_rewritten_frames_keep_every_row()
    {
        using var a = _dir.OpenTde("turns.db");
        a.Exec("PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; PRAGMA cache_size=5; CREATE TABLE t(id INTEGER PRIMARY KEY, owner TEXT, v BLOB);");
        using var b = _dir.OpenTde("turns.db");
        b.Exec("PRAGMA cache_size=5; PRAGMA wal_autocheckpoint=0");
        var expected = new Dictionary<string, long> { ["a"] = 0, ["b"] = 0 };
        for (var round = 0; round < 6; round++)
        {
            foreach (var (db, owner) in new[] { (a, "a"), (b, "b") })
            {
                // Spills and rewrites within the transaction (zero-salt frames until commit), after the
                // other connection restarted the WAL (new salts, the same frame offsets reused).
                db.Exec($"BEGIN; INSERT INTO t(owner, v) SELECT '{owner}', randomblob(600) FROM (WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<60) SELECT i FROM c); " +
                        $"UPDATE t SET v = randomblob(600) WHERE owner = '{owner}'; UPDATE t SET v = randomblob(500) WHERE owner = '{owner}' AND id % 2 = 0; COMMIT;");
                expected[owner] += 60;
                Assert.Equal("ok", (owner == "a" ? b : a).Scalar<string>("PRAGMA integrity_check"));
                // Checkpoint after some turns only: the next writer then restarts the WAL, or appends
                // to frames of the other connection's generation.
                if ((round + (owner == "a" ? 0 : 1)) % 3 != 0)
                {
                    db.Exec(round % 2 == 0 ? "PRAGMA wal_checkpoint(RESTART)" : "PRAGMA wal_checkpoint(TRUNCATE)");
                }
            }
        }

        a.Exec("BEGIN; UPDATE t SET v = randomblob(300) WHERE id % 3 = 0; UPDATE t SET v = randomblob(300) WHERE id % 3 = 0; COMMIT;");
        Assert.Equal(expected["a"], b.Scalar<long>("SELECT count(*) FROM t WHERE owner = 'a'"));
        Assert.Equal(expected["b"], a.Scalar<long>("SELECT count(*) FROM t WHERE owner = 'b'"));
        var total = a.Scalar<long>("SELECT sum(length(v)) FROM t");

        // A copy of database and WAL, opened without the wal-index: recovery reads every frame whole.
        File.Copy(_dir.File("turns.db"), _dir.File("copy.db"));
        File.Copy(_dir.File("turns.db-wal"), _dir.File("copy.db-wal"));
        using var copy = _dir.OpenTde("copy.db");
        Assert.Equal("ok", copy.Scalar<string>("PRAGMA integrity_check"));
        Assert.Equal(total, copy.Scalar<long>("SELECT sum(length(v)) FROM t"));
    }
}
