using Microsoft.Data.Sqlite;

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
