using System.Globalization;
using Microsoft.Data.Sqlite;
using TdeEngine.Kms;
using TdeEngine.Kms.KeyManagement;
using TdeEngine.Sqlite;

// A writer for the crash tests: it commits numbered transactions to a TDE database as fast as it
// can and prints "committed N" after each commit returns. The test SIGKILLs it at a random moment
// and checks that every transaction it saw committed is in the database, and that the database is
// intact. Usage: TdeEngine.CrashWriter <database> <DELETE|WAL> [mmap] (TDE_HOME names the KMS home;
// "mmap" makes the writer read through memory-mapped I/O), or <database> <DELETE|WAL> resize KEEP ADD,
// or <database> DELETE first N, or <database> WAL turns.
var path = args[0];
var journalMode = args[1];
using var kms = KeyManagementService.Open(new KmsOptions());
TdeSqlite.Register(kms, new TdeEngine.Storage.TdeStorageOptions { MemoryMapSize = args.Contains("mmap") ? 256L << 20 : 0 });
using var db = new SqliteConnection(TdeSqlite.ConnectionString(path) + ";Default Timeout=30");
db.Open();

// "resize KEEP ADD": keep rows up to n = KEEP, VACUUM (the file shrinks), then add ADD rows (it grows),
// checkpointing in WAL mode so the database file itself changes size; for readers in other processes.
if (args.Length >= 5 && args[2] == "resize")
{
    using var resize = db.CreateCommand();
    resize.CommandText = $"DELETE FROM t WHERE n > {int.Parse(args[3], CultureInfo.InvariantCulture)}; VACUUM;" +
                         (journalMode == "WAL" ? "PRAGMA wal_checkpoint(TRUNCATE);" : "");
    resize.ExecuteNonQuery();
    using (var tx = db.BeginTransaction())
    using (var add = db.CreateCommand())
    {
        add.CommandText = "INSERT INTO t(payload) VALUES (zeroblob(3000))";
        for (var i = 0; i < int.Parse(args[4], CultureInfo.InvariantCulture); i++)
        {
            add.ExecuteNonQuery();
        }

        tx.Commit();
    }

    resize.CommandText = journalMode == "WAL" ? "PRAGMA wal_checkpoint(TRUNCATE)" : "SELECT 1";
    resize.ExecuteNonQuery();
    Console.Out.WriteLine("resized");
    return;
}
// "first N": the first transaction of a new database inserts N rows through a tiny cache, so SQLite
// spills pages to the file before page 1 exists there; prints "spilled" and waits to be killed.
if (args.Length >= 4 && args[2] == "first")
{
    using var first = db.CreateCommand();
    first.CommandText = "PRAGMA cache_size=2; BEGIN; CREATE TABLE t(n INTEGER PRIMARY KEY, payload TEXT NOT NULL); " +
        $"INSERT INTO t(payload) SELECT hex(randomblob(1500)) FROM (WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<{int.Parse(args[3], CultureInfo.InvariantCulture)}) SELECT i FROM c);";
    first.ExecuteNonQuery();
    Console.Out.WriteLine("spilled");
    Console.Out.Flush();
    Thread.Sleep(Timeout.Infinite);
}

// "turns": a child for the WAL review probes; keeps its connection open and answers stdin lines:
// "ready", "check" (count:sum), "tx N CKPT" (a spilling transaction of N rows, then a checkpoint), "quit".
if (args.Length >= 3 && args[2] == "turns")
{
    string Run(string sql, bool scalar = false)
    {
        using var c = db.CreateCommand();
        c.CommandText = sql;
        return scalar ? Convert.ToString(c.ExecuteScalar(), CultureInfo.InvariantCulture)! : c.ExecuteNonQuery().ToString(CultureInfo.InvariantCulture);
    }

    Run("PRAGMA cache_size=5; PRAGMA wal_autocheckpoint=0; PRAGMA busy_timeout=10000");
    string? line;
    while ((line = Console.In.ReadLine()) is not null)
    {
        try
        {
            var w = line.Split(' ');
            switch (w[0])
            {
                case "ready": Console.Out.WriteLine("ok"); break;
                case "check": Console.Out.WriteLine("ok " + Run("SELECT count(*) || ':' || sum(length(v)) FROM t", true)); break;
                case "tx":
                    Run($"BEGIN; INSERT INTO t(owner, v) SELECT 'b', randomblob(600) FROM (WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<{w[1]}) SELECT i FROM c); " +
                        "UPDATE t SET v = randomblob(600) WHERE owner = 'b'; UPDATE t SET v = randomblob(500) WHERE id % 3 = 0; COMMIT;");
                    if (w[2] != "NONE")
                    {
                        Run($"PRAGMA wal_checkpoint({w[2]})");
                    }

                    Console.Out.WriteLine("ok " + Run("SELECT count(*) || ':' || sum(length(v)) FROM t", true));
                    break;
                case "quit": Console.Out.WriteLine("ok"); Console.Out.Flush(); return;
            }
        }
        catch (Exception e)
        {
            Console.Out.WriteLine("err " + e.Message.Replace('\n', ' ') + " TDE: " + TdeSqlite.LastError?.Code + ": " + TdeSqlite.LastError?.Message?.Replace('\n', ' '));
        }

        Console.Out.Flush();
    }

    return;
}

using (var setup = db.CreateCommand())
{
    setup.CommandText = $"PRAGMA journal_mode={journalMode}; PRAGMA cache_size=20; " +
                        "CREATE TABLE IF NOT EXISTS t(n INTEGER PRIMARY KEY, payload TEXT NOT NULL);";
    setup.ExecuteNonQuery();
}

var n = 0L;
using (var last = db.CreateCommand())
{
    last.CommandText = "SELECT coalesce(max(n), 0) FROM t";
    n = (long)last.ExecuteScalar()!;
}

var random = new Random();
while (true)
{
    n++;
    using (var tx = db.BeginTransaction())
    using (var insert = db.CreateCommand())
    {
        // Several rows and an update per transaction, with payloads large enough to spill the cache.
        insert.CommandText = "INSERT INTO t(n, payload) VALUES ($n, $p); UPDATE t SET payload = payload || 'u' WHERE n = $m;";
        insert.Parameters.AddWithValue("$n", n);
        insert.Parameters.AddWithValue("$p", new string((char)('a' + (n % 26)), 500 + random.Next(3000)));
        insert.Parameters.AddWithValue("$m", Math.Max(1, n - random.Next(50)));
        insert.ExecuteNonQuery();
        tx.Commit();
    }

    Console.Out.WriteLine("committed " + n.ToString(CultureInfo.InvariantCulture));
    Console.Out.Flush();
}
