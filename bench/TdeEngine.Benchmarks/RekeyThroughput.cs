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
        }
        finally
        {
            SqliteConnection.ClearAllPools();
            Directory.Delete(root, recursive: true);
        }

        return 0;
    }
}
