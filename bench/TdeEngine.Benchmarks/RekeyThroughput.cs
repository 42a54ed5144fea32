using System.Diagnostics;
using System.Globalization;
using Microsoft.Data.Sqlite;
using TdeEngine.Kms;
using TdeEngine.Kms.KeyManagement;
using TdeEngine.Sqlite;

namespace TdeEngine.Benchmarks;

/// <summary>
/// What an online DEK re-encryption costs: <c>rekey [--mb N] [--runs N] [--batch-pages N]</c>. A TDE
/// database of about N MB is re-encrypted (every page opened and sealed again, journalled, fsynced
/// per batch), idle. Baselines in the same run, on the same file: copying it and fsyncing the copy
/// (the I/O floor), and <c>TdeDatabases.Verify</c> (every page read and opened, then integrity_check).
/// </summary>
internal static class RekeyThroughput
{
    public static int Run(string[] args)
    {
        var megabytes = SideBySide.Option(args, "--mb", 64);
        var runs = SideBySide.Option(args, "--runs", 3);
        var batchPages = SideBySide.Option(args, "--batch-pages", 256);
        var root = Path.Combine(Path.GetTempPath(), "tde-rekey-bench-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(root);
        using var kms = KeyManagementService.Open(new KmsOptions { Home = Path.Combine(root, "kms") });
        TdeSqlite.Register(kms);
        try
        {
            Console.WriteLine($"rekey: a ~{megabytes} MB TDE database (AES-256-GCM, 4 KiB pages), batches of {batchPages} pages, {runs} interleaved runs, medians");
            Console.WriteLine("| journal mode | copy + fsync (baseline) ms | verify ms | rekey ms | rekey ÷ copy | rekey ÷ verify | rekey MB/s |");
            Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|");
            foreach (var journalMode in new[] { "DELETE", "WAL" })
            {
                var path = Path.Combine(root, $"rekey-{journalMode}.db");
                using (var db = new SqliteConnection($"Data Source=file:{path}?vfs=tde;Pooling=False"))
                {
                    db.Open();
                    using var fill = db.CreateCommand();
                    fill.CommandText = $"PRAGMA journal_mode={journalMode}; CREATE TABLE t(v BLOB); " +
                                       $"WITH x(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM x WHERE n < {megabytes * 256}) INSERT INTO t SELECT randomblob(3900) FROM x;";
                    fill.ExecuteNonQuery();
                    if (journalMode == "WAL")
                    {
                        fill.CommandText = "PRAGMA wal_checkpoint(TRUNCATE)";
                        fill.ExecuteNonQuery();
                    }
                }

                var size = new FileInfo(path).Length;
                var (copy, verify, rekey) = (new List<double>(), new List<double>(), new List<double>());
                for (var run = 0; run < runs; run++)
                {
                    var copyPath = path + ".copy";
                    var watch = Stopwatch.StartNew();
                    File.Copy(path, copyPath, overwrite: true);
                    using (var handle = File.OpenHandle(copyPath, FileMode.Open, FileAccess.ReadWrite))
                    {
                        RandomAccess.FlushToDisk(handle);
                    }

                    copy.Add(watch.Elapsed.TotalMilliseconds);
                    File.Delete(copyPath);

                    watch.Restart();
                    if (!TdeDatabases.Verify(path).Intact)
                    {
                        throw new InvalidOperationException("The benchmark database does not verify.");
                    }

                    verify.Add(watch.Elapsed.TotalMilliseconds);

                    watch.Restart();
                    TdeDatabases.Rekey(path, batchPages: batchPages);
                    rekey.Add(watch.Elapsed.TotalMilliseconds);
                }

                var (c, v, r) = (SideBySide.Median(copy), SideBySide.Median(verify), SideBySide.Median(rekey));
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {journalMode} | {c:F0} | {v:F0} | {r:F0} | {r / c:F1} | {r / v:F1} | {size / 1048576.0 / (r / 1000):F0} |"));
            }

            UnderLoad(root, batchPages, runs, busyTimeoutMs: 0);
            UnderLoad(root, batchPages, runs, busyTimeoutMs: null);
        }
        finally
        {
            SqliteConnection.ClearAllPools();
            Directory.Delete(root, recursive: true);
        }

        return 0;
    }

    // The same rekey while an application works: one connection commits a small INSERT every 5 ms
    // (up to 200 commits/s, each its own transaction) and another reads random rows as fast as it
    // can. Baseline: the same load for the same time with no rekey, right after, on the same file.
    // A paced writer models an application; an unpaced one would starve rollback-mode readers by
    // itself (SQLite's PENDING lock), rekey or not.
    private static void UnderLoad(string root, int batchPages, int runs, int? busyTimeoutMs)
    {
        Console.WriteLine();
        Console.WriteLine($"rekey under load: a writer committing one small INSERT every 5 ms and a reader of random rows, on their own connections, {runs} runs, medians; " +
                          (busyTimeoutMs == 0
                              ? "the app's connections with PRAGMA busy_timeout = 0 (only Microsoft.Data.Sqlite's retries, after 150 ms sleeps: TDE connections before TdeStorageOptions.BusyTimeout)"
                              : "the app's connections as TDE opens them (busy_timeout from TdeStorageOptions.BusyTimeout, 5 s: SQLite waits in steps of a few ms)"));
        Console.WriteLine("| journal mode | rekey ms (under load) | commits/s alone | during rekey | p99 commit ms alone | during rekey | slowest commit ms alone | during rekey | reads/s alone | during rekey |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var journalMode in new[] { "DELETE", "WAL" })
        {
            var path = Path.Combine(root, $"load-{journalMode}-{busyTimeoutMs?.ToString(CultureInfo.InvariantCulture) ?? "default"}.db");
            using (var db = new SqliteConnection($"Data Source=file:{path}?vfs=tde;Pooling=False"))
            {
                db.Open();
                using var fill = db.CreateCommand();
                fill.CommandText = $"PRAGMA journal_mode={journalMode}; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB); " +
                                   "WITH x(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM x WHERE n < 8192) INSERT INTO t(v) SELECT randomblob(3900) FROM x;";
                fill.ExecuteNonQuery();
            }

            var rows = new List<LoadResult>[2] { [], [] };
            var rekeyMs = new List<double>();
            for (var run = 0; run < runs; run++)
            {
                var watch = Stopwatch.StartNew();
                rows[1].Add(Load(path, busyTimeoutMs, () => TdeDatabases.Rekey(path, batchPages: batchPages)));
                var elapsed = watch.Elapsed;
                rekeyMs.Add(elapsed.TotalMilliseconds);
                rows[0].Add(Load(path, busyTimeoutMs, () => Thread.Sleep(elapsed)));
            }

            double M(int i, Func<LoadResult, double> f) => SideBySide.Median(rows[i].ConvertAll(r => f(r)));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {journalMode} | {SideBySide.Median(rekeyMs):F0} | {M(0, r => r.CommitsPerSecond):F0} | {M(1, r => r.CommitsPerSecond):F0} | " +
                $"{M(0, r => r.P99CommitMs):F1} | {M(1, r => r.P99CommitMs):F1} | {M(0, r => r.SlowestCommitMs):F0} | {M(1, r => r.SlowestCommitMs):F0} | " +
                $"{M(0, r => r.ReadsPerSecond):F0} | {M(1, r => r.ReadsPerSecond):F0} |"));
        }
    }

    private static SqliteConnection Connect(string path, int? busyTimeoutMs)
    {
        var db = new SqliteConnection(TdeSqlite.ConnectionString(path));
        db.Open();
        if (busyTimeoutMs is not null)
        {
            using var pragma = db.CreateCommand();
            pragma.CommandText = $"PRAGMA busy_timeout = {busyTimeoutMs}";
            pragma.ExecuteNonQuery();
        }

        return db;
    }

    private sealed record LoadResult(double CommitsPerSecond, double P99CommitMs, double SlowestCommitMs, double ReadsPerSecond);

    private static LoadResult Load(string path, int? busyTimeoutMs, Action work)
    {
        using var stop = new CancellationTokenSource();
        var latencies = new List<double>();
        long reads = 0;
        var writer = Task.Run(() =>
        {
            using var db = Connect(path, busyTimeoutMs);
            using var insert = db.CreateCommand();
            insert.CommandText = "INSERT INTO t(v) VALUES (randomblob(200))";
            var pace = Stopwatch.StartNew();
            var next = TimeSpan.Zero;
            while (!stop.IsCancellationRequested)
            {
                next += TimeSpan.FromMilliseconds(5);
                var one = Stopwatch.StartNew();
                insert.ExecuteNonQuery();
                latencies.Add(one.Elapsed.TotalMilliseconds);
                var wait = next - pace.Elapsed;
                if (wait > TimeSpan.Zero)
                {
                    Thread.Sleep(wait);
                }
                else
                {
                    next = pace.Elapsed;   // behind: no burst to catch up
                }
            }
        });
        var reader = Task.Run(() =>
        {
            using var db = Connect(path, busyTimeoutMs);
            using var select = db.CreateCommand();
            select.CommandText = "SELECT length(v) FROM t WHERE id = $id";
            var id = select.Parameters.Add("$id", SqliteType.Integer);
            var random = new Random(7);
            while (!stop.IsCancellationRequested)
            {
                id.Value = random.Next(1, 8192);
                select.ExecuteScalar();
                reads++;
            }
        });
        var watch = Stopwatch.StartNew();
        work();
        var seconds = watch.Elapsed.TotalSeconds;
        stop.Cancel();
        Task.WaitAll(writer, reader);
        latencies.Sort();
        var p99 = latencies.Count == 0 ? 0 : latencies[Math.Min(latencies.Count - 1, (int)(latencies.Count * 0.99))];
        return new LoadResult(latencies.Count / seconds, p99, latencies.Count == 0 ? 0 : latencies[^1], reads / seconds);
    }
}
