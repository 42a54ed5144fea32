using System.Globalization;
using Microsoft.Data.Sqlite;
using TdeEngine.Kms;
using TdeEngine.Kms.KeyManagement;
using TdeEngine.Sqlite;

// A writer for the crash tests: it commits numbered transactions to a TDE database as fast as it
// can and prints "committed N" after each commit returns. The test SIGKILLs it at a random moment
// and checks that every transaction it saw committed is in the database, and that the database is
// intact. Usage: TdeEngine.CrashWriter <database> <DELETE|WAL> [mmap] (TDE_HOME names the KMS home;
// "mmap" makes the writer read through memory-mapped I/O), or <database> <DELETE|WAL> resize KEEP ADD.
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
