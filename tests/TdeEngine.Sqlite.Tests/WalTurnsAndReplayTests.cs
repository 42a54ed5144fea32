using System.Buffers.Binary;
using System.Diagnostics;
using Microsoft.Data.Sqlite;
using TdeEngine.Storage.Errors;
using static TdeEngine.Sqlite.Tests.SqlExtensions;

namespace TdeEngine.Sqlite.Tests;

/// <summary>
/// The WAL frame bindings under connections and processes taking turns through WAL restarts, and a
/// frame of an older generation put back under a live wal-index (from the 2026-11-29 review of the
/// one-read body path and the remembered headers).
/// </summary>
public sealed class WalTurnsAndReplayTests : IDisposable
{
    private readonly DatabaseFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    // Three connections take random turns: spilling transactions that rewrite frames, savepoints
    // rolled back, whole transactions rolled back, checkpoints of every kind, journal_size_limit,
    // autocheckpoint, VACUUM; every commit is checked from another connection, and at the end a
    // copy of db + WAL (no wal-index) is recovered.
    [Theory]
    [InlineData(1024, 1)]
    [InlineData(4096, 2)]
    [InlineData(8192, 3)]
    [InlineData(65536, 4)]
    public void Random_turns_of_three_connections_keep_every_row(int pageSize, int seed)
    {
        var random = new Random(seed);
        var conns = new SqliteConnection[3];
        conns[0] = _dir.OpenTde("r.db", $"page_size={pageSize}");
        conns[0].Exec("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, owner INTEGER, v BLOB); CREATE INDEX t_o ON t(owner);");
        for (var i = 1; i < 3; i++)
        {
            conns[i] = _dir.OpenTde("r.db");
        }

        try
        {
            for (var i = 0; i < 3; i++)
            {
                conns[i].Exec($"PRAGMA cache_size={(pageSize >= 32768 ? 3 : 6)}; PRAGMA wal_autocheckpoint={(i == 2 ? 7 : 0)}; PRAGMA journal_size_limit={(i == 1 ? 0 : -1)};");
            }

            var rowsPerTx = Math.Max(4, 30 * 4096 / pageSize);
            var blob = Math.Min(pageSize / 3, 1500);
            string? expected = null;
            for (var step = 0; step < 120; step++)
            {
                var who = random.Next(3);
                var c = conns[who];
                var op = random.Next(10);
                var sql = op switch
                {
                    0 or 1 or 2 => $"BEGIN; INSERT INTO t(owner, v) SELECT {who}, randomblob({blob}) FROM {Rows(rowsPerTx)}; " +
                                   $"UPDATE t SET v = randomblob({blob}) WHERE owner = {who}; UPDATE t SET v = randomblob({blob - 10}) WHERE id % 2 = 0; COMMIT;",
                    3 => $"BEGIN; UPDATE t SET v = randomblob({blob}) WHERE id % 3 = 0; SAVEPOINT s; INSERT INTO t(owner, v) SELECT {who}, randomblob({blob}) FROM {Rows(rowsPerTx * 2)}; " +
                         $"UPDATE t SET v = randomblob({blob}); ROLLBACK TO s; UPDATE t SET v = randomblob({blob - 20}) WHERE id % 5 = 0; RELEASE s; COMMIT;",
                    4 => $"BEGIN; INSERT INTO t(owner, v) SELECT {who}, randomblob({blob}) FROM {Rows(rowsPerTx * 2)}; UPDATE t SET v = randomblob({blob}); UPDATE t SET v = randomblob({blob}) WHERE id % 2 = 1; ROLLBACK;",
                    5 => "PRAGMA wal_checkpoint(" + (new[] { "PASSIVE", "FULL", "RESTART", "TRUNCATE" })[random.Next(4)] + ")",
                    6 => $"DELETE FROM t WHERE id IN (SELECT id FROM t ORDER BY random() LIMIT {rowsPerTx});",
                    7 => step % 4 == 0 ? "VACUUM" : "PRAGMA wal_checkpoint(PASSIVE); " +
                         $"BEGIN; UPDATE t SET v = randomblob({blob}) WHERE id % 4 = 0; UPDATE t SET v = randomblob({blob}) WHERE id % 4 = 0; COMMIT;",
                    _ => $"BEGIN; UPDATE t SET v = randomblob({blob}) WHERE id % 7 = {step % 7}; SAVEPOINT a; UPDATE t SET v = randomblob({blob}); SAVEPOINT b; " +
                         $"INSERT INTO t(owner, v) SELECT {who}, randomblob({blob}) FROM {Rows(rowsPerTx)}; ROLLBACK TO b; ROLLBACK TO a; RELEASE a; COMMIT;",
                };
                try
                {
                    c.Exec(sql);
                    var now = c.Scalar<string>("SELECT count(*) || ':' || coalesce(sum(length(v)), 0) FROM t");
                    if (op == 4 && expected is not null)
                    {
                        Assert.Equal(expected, now);
                    }

                    expected = now;
                    var other = conns[(who + 1 + random.Next(2)) % 3];
                    Assert.Equal(expected, other.Scalar<string>("SELECT count(*) || ':' || coalesce(sum(length(v)), 0) FROM t"));
                    if (step % 10 == 0)
                    {
                        Assert.Equal("ok", other.Scalar<string>("PRAGMA integrity_check"));
                    }
                }
                catch (SqliteException e)
                {
                    Assert.Fail($"step {step}, connection {who}, op {op}: {Fail(e)}");
                }
            }

            File.Copy(_dir.File("r.db"), _dir.File("copy.db"));
            File.Copy(_dir.File("r.db-wal"), _dir.File("copy.db-wal"));
            using var copy = _dir.OpenTde("copy.db");
            Assert.Equal("ok", copy.Scalar<string>("PRAGMA integrity_check"));
            Assert.Equal(expected, copy.Scalar<string>("SELECT count(*) || ':' || coalesce(sum(length(v)), 0) FROM t"));
        }
        finally
        {
            foreach (var c in conns)
            {
                c?.Dispose();
            }
        }
    }

    // Exclusive locking mode (heap wal-index): one connection through restarts, rewrites, rollbacks; then recovery.
    [Fact]
    public void Exclusive_locking_mode_through_restarts_and_rewrites()
    {
        using var c = _dir.OpenTde("x.db");
        c.Exec("PRAGMA locking_mode=EXCLUSIVE; PRAGMA journal_mode=WAL; PRAGMA cache_size=5; PRAGMA wal_autocheckpoint=0; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);");
        for (var round = 0; round < 8; round++)
        {
            c.Exec($"BEGIN; INSERT INTO t(v) SELECT randomblob(700) FROM {Rows(80)}; UPDATE t SET v = randomblob(700); UPDATE t SET v = randomblob(600) WHERE id % 2 = 0; COMMIT;");
            c.Exec($"BEGIN; UPDATE t SET v = randomblob(700); UPDATE t SET v = randomblob(700) WHERE id % 3 = 0; ROLLBACK;");
            c.Exec(round % 2 == 0 ? "PRAGMA wal_checkpoint(TRUNCATE)" : "PRAGMA wal_checkpoint(RESTART)");
            c.Exec("BEGIN; UPDATE t SET v = randomblob(650) WHERE id % 3 = 1; UPDATE t SET v = randomblob(640) WHERE id % 3 = 1; COMMIT;");
            Assert.Equal("ok", c.Scalar<string>("PRAGMA integrity_check"));
        }

        var expected = c.Scalar<string>("SELECT count(*) || ':' || sum(length(v)) FROM t");
        File.Copy(_dir.File("x.db"), _dir.File("copy.db"));
        File.Copy(_dir.File("x.db-wal"), _dir.File("copy.db-wal"));
        using var copy = _dir.OpenTde("copy.db");
        Assert.Equal("ok", copy.Scalar<string>("PRAGMA integrity_check"));
        Assert.Equal(expected, copy.Scalar<string>("SELECT count(*) || ':' || sum(length(v)) FROM t"));
    }

    // A parent and a child process (each keeping its connection open) write the same WAL database in
    // turn, checkpointing (RESTART/TRUNCATE) so each restarts the log under the other's remembered frames.
    [Fact]
    public void Two_processes_taking_turns_through_restarts_keep_every_row()
    {
        var database = _dir.File("p.db");
        using var a = _dir.OpenTde("p.db");
        a.Exec("PRAGMA journal_mode=WAL; PRAGMA cache_size=5; PRAGMA wal_autocheckpoint=0; CREATE TABLE t(id INTEGER PRIMARY KEY, owner TEXT, v BLOB);");
        a.Exec("PRAGMA busy_timeout=10000");
        var home = TdeTestEnvironment.Kms.Options.Home;
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "TdeEngine.CrashWriter.dll"));
        start.ArgumentList.Add(database);
        start.ArgumentList.Add("WAL");
        start.ArgumentList.Add("turns");
        start.Environment["TDE_HOME"] = home;
        using var child = Process.Start(start)!;
        var stderr = child.StandardError.ReadToEndAsync();
        string Ask(string line)
        {
            child.StandardInput.WriteLine(line);
            child.StandardInput.Flush();
            var answer = child.StandardOutput.ReadLine() ?? "eof: " + stderr.Result;
            Assert.True(answer.StartsWith("ok", StringComparison.Ordinal), $"child: {line}: {answer}");
            return answer.Length > 3 ? answer[3..] : "";
        }

        try
        {
            Ask("ready");
            for (var round = 0; round < 10; round++)
            {
                var mode = (new[] { "RESTART", "TRUNCATE", "PASSIVE", "NONE" })[round % 4];
                try
                {
                    a.Exec($"BEGIN; INSERT INTO t(owner, v) SELECT 'a', randomblob(600) FROM {Rows(50 + round)}; UPDATE t SET v = randomblob(600) WHERE owner = 'a'; " +
                           "UPDATE t SET v = randomblob(500) WHERE id % 2 = 0; COMMIT;");
                    if (mode != "NONE")
                    {
                        a.Exec($"PRAGMA wal_checkpoint({mode})");
                    }
                }
                catch (SqliteException e)
                {
                    Assert.Fail($"parent round {round}: {Fail(e)}");
                }

                Assert.Equal(a.Scalar<string>("SELECT count(*) || ':' || sum(length(v)) FROM t"), Ask("check"));
                var childSays = Ask($"tx {40 + round} {(new[] { "TRUNCATE", "NONE", "RESTART", "PASSIVE" })[round % 4]}");
                try
                {
                    Assert.Equal(childSays, a.Scalar<string>("SELECT count(*) || ':' || sum(length(v)) FROM t"));
                    Assert.Equal("ok", a.Scalar<string>("PRAGMA integrity_check"));
                }
                catch (SqliteException e)
                {
                    Assert.Fail($"parent read after child round {round}: {Fail(e)}");
                }
            }

            Ask("quit");
        }
        finally
        {
            if (!child.WaitForExit(10_000))
            {
                child.Kill();
            }
        }

        var total = a.Scalar<string>("SELECT count(*) || ':' || sum(length(v)) FROM t");
        File.Copy(_dir.File("p.db"), _dir.File("copy.db"));
        File.Copy(_dir.File("p.db-wal"), _dir.File("copy.db-wal"));
        using var copy = _dir.OpenTde("copy.db");
        Assert.Equal("ok", copy.Scalar<string>("PRAGMA integrity_check"));
        Assert.Equal(total, copy.Scalar<string>("SELECT count(*) || ':' || sum(length(v)) FROM t"));
    }

    // Tamper: frame 0 of an older WAL generation (its own header: old salts, another page number)
    // copied over frame 0 of today's generation, under a live database (wal-index present).
    [Fact]
    public void An_older_generation_frame_replayed_with_its_own_header_fails()
    {
        const int frame = 24 + 4096;
        using var writer = _dir.OpenTde("g.db");
        writer.Exec("PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE a(v TEXT); CREATE TABLE b(v TEXT);");
        writer.Exec("PRAGMA wal_checkpoint(TRUNCATE)");
        writer.Exec("INSERT INTO a VALUES ('old-a')");   // generation 1, frame 0: table a's page
        var wal = _dir.File("g.db-wal");
        byte[] old;
        using (var s = new FileStream(wal, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete))
        {
            old = new byte[frame];
            s.Position = 32;
            s.ReadExactly(old);
        }

        writer.Exec("PRAGMA wal_checkpoint(RESTART)");
        writer.Exec("INSERT INTO b VALUES ('new-b')");   // generation 2, frame 0: table b's page
        Assert.NotEqual(BinaryPrimitives.ReadUInt32BigEndian(old), BinaryPrimitives.ReadUInt32BigEndian(File.ReadAllBytes(wal).AsSpan(32)));
        using (var s = new FileStream(wal, FileMode.Open, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete))
        {
            s.Position = 32;
            s.Write(old);
        }

        SqlExtensions.AssertOlderGenerationFrameRefused(_dir.File("g.db"));
    }
}
