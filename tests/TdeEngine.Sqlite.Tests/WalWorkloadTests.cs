using Microsoft.Data.Sqlite;

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
