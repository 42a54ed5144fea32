using System.Diagnostics;
using System.Globalization;
using Microsoft.Data.Sqlite;
using TdeEngine.Kms;
using TdeEngine.Kms.KeyManagement;
using TdeEngine.Sqlite;

namespace TdeEngine.Benchmarks;

/// <summary>
/// The side-by-side harness: the same workloads on plain SQLite and on TDE databases (both cipher
/// suites), in both journal modes, same native SQLite build and page size, in one run. Each
/// configuration runs <c>runs</c> times, interleaved; the table shows medians and the ratio
/// TDE ÷ plain.
/// </summary>
internal static class SideBySide
{
    // BackupTarget: what VACUUM INTO names for a copy of the database at a path (the same cipher: a TDE target of other geometry is refused).
    private sealed record Variant(string Name, Func<string, string> ConnectionString, Func<string, string> BackupTarget);

    public static int Run(string[] args)
    {
        var rows = Option(args, "--rows", 100_000);
        var runs = Option(args, "--runs", 5);
        var lookups = Option(args, "--lookups", 100_000);
        var scans = Option(args, "--scans", 20);
        var updates = Option(args, "--updates", 20_000);
        var synchronous = args.SkipWhile(a => a != "--synchronous").Skip(1).FirstOrDefault() ?? "NORMAL";
        var cacheMb = Option(args, "--cache-mb", 0);   // 0: SQLite's default page cache (2 MB)
        var mmapMb = Option(args, "--mmap-mb", 0);     // 0: SQLite's default (no memory-mapped I/O)
        var mmapTdeOnly = args.Contains("--mmap-tde-only");   // plain SQLite keeps its default

        var root = Path.Combine(Path.GetTempPath(), "tde-side-by-side-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(root);
        using var kms = KeyManagementService.Open(new KmsOptions { Home = Path.Combine(root, "kms") });
        TdeSqlite.Register(kms);

        Variant[] variants =
        [
            new("plain SQLite", path => $"Data Source={path};Pooling=False", path => path),
            new("TDE AES-256-GCM", path => $"Data Source=file:{path}?vfs=tde&cipher=aes-256-gcm;Pooling=False", path => $"file:{path}?vfs=tde&cipher=aes-256-gcm"),
            new("TDE AEGIS-256", path => $"Data Source=file:{path}?vfs=tde&cipher=aegis-256;Pooling=False", path => $"file:{path}?vfs=tde&cipher=aegis-256"),
        ];
        string[] workloads = ["insert", "indexed read", "full scan", "update", "backup (VACUUM INTO)"];
        if (args.SkipWhile(a => a != "--only").Skip(1).FirstOrDefault() is { } only)
        {
            // For profiling one configuration (strace -c, perf): the others do not run and the ratio columns are empty.
            variants = variants.Where(v => v.Name.Contains(only, StringComparison.OrdinalIgnoreCase)).ToArray();
        }

        Console.WriteLine($"side-by-side: {rows:N0} rows of ~64-byte text, {lookups:N0} indexed reads, {scans} full scans, {updates:N0} updates; " +
                          $"page size 4096, synchronous={synchronous}, page cache {(cacheMb == 0 ? "default (2 MB)" : cacheMb + " MB")}, " +
                          $"mmap_size {(mmapMb == 0 ? "default (0)" : mmapMb + " MB" + (mmapTdeOnly ? " on the TDE connections only" : ""))}, {runs} interleaved runs, medians in ms");
        try
        {
            // --journal DELETE|WAL: one journal mode only (for profiling, as --only).
            var journalModes = args.SkipWhile(a => a != "--journal").Skip(1).FirstOrDefault() is { } onlyMode ? [onlyMode.ToUpperInvariant()] : new[] { "DELETE", "WAL" };
            foreach (var journalMode in journalModes)
            {
                var samples = variants.ToDictionary(v => v.Name, _ => workloads.ToDictionary(w => w, _ => new List<double>()));
                for (var run = 0; run < runs; run++)
                {
                    foreach (var variant in variants)
                    {
                        var path = Path.Combine(root, $"{journalMode}-{run}-{variant.Name.Replace(' ', '-')}.db");
                        var mmap = mmapTdeOnly && !variant.Name.StartsWith("TDE", StringComparison.Ordinal) ? 0 : mmapMb;
                        var times = RunWorkloads(variant.ConnectionString(path), journalMode, synchronous, cacheMb, mmap, rows, lookups, scans, updates,
                            backupTarget: variant.BackupTarget(path + ".copy"));
                        RecordAndDelete(path, times, samples[variant.Name]);
                    }
                }

                Console.WriteLine();
                Console.WriteLine($"journal_mode={journalMode}");
                Console.WriteLine("| workload | plain SQLite ms | TDE AES-256-GCM ms | ratio | TDE AEGIS-256 ms | ratio |");
                Console.WriteLine("|---|---:|---:|---:|---:|---:|");
                foreach (var workload in workloads)
                {
                    var plain = MedianOf(samples, "plain SQLite", workload);
                    var aes = MedianOf(samples, "TDE AES-256-GCM", workload);
                    var aegis = MedianOf(samples, "TDE AEGIS-256", workload);
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"| {workload} | {plain:F1} | {aes:F1} | {aes / plain:F3} | {aegis:F1} | {aegis / plain:F3} |"));
                }
            }
        }
        finally
        {
            SqliteConnection.ClearAllPools();
            Directory.Delete(root, recursive: true);
        }

        return 0;
    }

    /// <summary>
    /// The four workloads on one new database; <paramref name="afterOpen"/> runs first on the open
    /// connection (SQLCipher's key). With <paramref name="backupTarget"/>, a fifth: a copy of the
    /// database with <c>VACUUM INTO</c> (an online backup; SQLCipher 3.4.1's SQLite predates it).
    /// Returns milliseconds per workload.
    /// </summary>
    internal static Dictionary<string, double> RunWorkloads(string connectionString, string journalMode, string synchronous, int cacheMb, int mmapMb,
        int rows, int lookups, int scans, int updates, Action<SqliteConnection>? afterOpen = null, string? backupTarget = null)
    {
        var times = new Dictionary<string, double>();
        using var db = new SqliteConnection(connectionString);
        db.Open();
        afterOpen?.Invoke(db);
        if (cacheMb > 0)
        {
            Exec(db, $"PRAGMA cache_size=-{cacheMb * 1024}");
        }

        if (mmapMb > 0)
        {
            Exec(db, $"PRAGMA mmap_size={mmapMb * 1024L * 1024}");
        }

        Exec(db, $"PRAGMA journal_mode={journalMode}; PRAGMA synchronous={synchronous}; " +
                 "CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER NOT NULL, v TEXT NOT NULL); CREATE INDEX t_k ON t(k);");
        var random = new Random(42);

        var watch = Stopwatch.StartNew();
        using (var insert = db.CreateCommand())
        {
            insert.CommandText = "INSERT INTO t(k, v) VALUES ($k, $v)";
            var k = insert.Parameters.Add("$k", SqliteType.Integer);
            var v = insert.Parameters.Add("$v", SqliteType.Text);
            for (var i = 0; i < rows; i += 1000)
            {
                using var tx = db.BeginTransaction();
                insert.Transaction = tx;
                for (var j = i; j < Math.Min(rows, i + 1000); j++)
                {
                    k.Value = (j * 7919L) % rows;
                    v.Value = $"row {j:D8} " + new string((char)('a' + (j % 26)), 50);
                    insert.ExecuteNonQuery();
                }

                tx.Commit();
            }
        }

        times["insert"] = watch.Elapsed.TotalMilliseconds;

        watch.Restart();
        using (var lookup = db.CreateCommand())
        {
            lookup.CommandText = "SELECT v FROM t WHERE k = $k";
            var k = lookup.Parameters.Add("$k", SqliteType.Integer);
            for (var i = 0; i < lookups; i++)
            {
                k.Value = random.Next(rows);
                lookup.ExecuteScalar();
            }
        }

        times["indexed read"] = watch.Elapsed.TotalMilliseconds;

        watch.Restart();
        using (var scan = db.CreateCommand())
        {
            scan.CommandText = "SELECT sum(length(v)) FROM t";
            for (var i = 0; i < scans; i++)
            {
                scan.ExecuteScalar();
            }
        }

        times["full scan"] = watch.Elapsed.TotalMilliseconds;

        watch.Restart();
        using (var update = db.CreateCommand())
        {
            update.CommandText = "UPDATE t SET v = $v WHERE id = $id";
            var id = update.Parameters.Add("$id", SqliteType.Integer);
            var v = update.Parameters.Add("$v", SqliteType.Text);
            for (var i = 0; i < updates; i += 1000)
            {
                using var tx = db.BeginTransaction();
                update.Transaction = tx;
                for (var j = i; j < Math.Min(updates, i + 1000); j++)
                {
                    id.Value = random.Next(1, rows + 1);
                    v.Value = $"updated {j:D8} " + new string('u', 46);
                    update.ExecuteNonQuery();
                }

                tx.Commit();
            }
        }

        times["update"] = watch.Elapsed.TotalMilliseconds;

        if (backupTarget is not null)
        {
            watch.Restart();
            Exec(db, $"VACUUM INTO '{backupTarget.Replace("'", "''", StringComparison.Ordinal)}'");
            times["backup (VACUUM INTO)"] = watch.Elapsed.TotalMilliseconds;
        }

        return times;
    }

    /// <summary>Adds one run's times to the samples, then deletes the database and its side files.</summary>
    internal static void RecordAndDelete(string path, Dictionary<string, double> times, Dictionary<string, List<double>> samples)
    {
        foreach (var (workload, ms) in times)
        {
            samples[workload].Add(ms);
        }

        SqliteConnection.ClearAllPools();
        foreach (var file in Directory.GetFiles(Path.GetDirectoryName(path)!, Path.GetFileName(path) + "*"))
        {
            File.Delete(file);
        }
    }

    internal static void Exec(SqliteConnection db, string sql)
    {
        using var command = db.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    private static double MedianOf(Dictionary<string, Dictionary<string, List<double>>> samples, string variant, string workload) =>
        samples.TryGetValue(variant, out var byWorkload) ? Median(byWorkload[workload]) : double.NaN;

    internal static double Median(List<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[(sorted.Count / 2) - 1] + sorted[sorted.Count / 2]) / 2;
    }

    internal static int Option(string[] args, string name, int fallback)
    {
        var index = Array.IndexOf(args, name);
        return index >= 0 && index + 1 < args.Length ? int.Parse(args[index + 1], CultureInfo.InvariantCulture) : fallback;
    }
}
