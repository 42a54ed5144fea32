using System.Globalization;
using System.Runtime.InteropServices;
using Microsoft.Data.Sqlite;

namespace TdeEngine.Benchmarks;

/// <summary>
/// The side-by-side workloads on SQLCipher, in a process of their own: SQLitePCLRaw is bound to the
/// system's SQLCipher library (Debian's <c>libsqlcipher0</c>), and each workload runs on that
/// library without a key (its plain SQLite) and with one (4096-byte cipher pages), interleaved. The
/// ratio is SQLCipher's own cost on this machine, to read beside TDE's ratio against plain SQLite.
/// </summary>
internal static class SqlCipherSideBySide
{
    private const string Library = "/usr/lib/x86_64-linux-gnu/libsqlcipher.so.0";

    public static int Run(string[] args)
    {
        var rows = SideBySide.Option(args, "--rows", 100_000);
        var runs = SideBySide.Option(args, "--runs", 5);
        var lookups = SideBySide.Option(args, "--lookups", 100_000);
        var scans = SideBySide.Option(args, "--scans", 20);
        var updates = SideBySide.Option(args, "--updates", 20_000);
        var cacheMb = SideBySide.Option(args, "--cache-mb", 0);
        var synchronous = args.SkipWhile(a => a != "--synchronous").Skip(1).FirstOrDefault() ?? "NORMAL";

        EnsureLibrary();
        _ = new SqliteConnection();   // Microsoft.Data.Sqlite's own start-up binds e_sqlite3 first...
        NativeLibrary.SetDllImportResolver(typeof(SQLitePCL.SQLite3Provider_sqlite3).Assembly,
            (name, _, _) => name == "sqlite3" ? NativeLibrary.Load(Library) : IntPtr.Zero);
        SQLitePCL.raw.SetProvider(new SQLitePCL.SQLite3Provider_sqlite3());   // ...then every call goes to SQLCipher

        var root = Path.Combine(Path.GetTempPath(), "tde-sqlcipher-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(root);
        try
        {
            string version;
            using (var probe = new SqliteConnection($"Data Source={Path.Combine(root, "probe.db")};Pooling=False"))
            {
                probe.Open();
                Key(probe);
                version = Scalar(probe, "PRAGMA cipher_version") + " (SQLite " + Scalar(probe, "SELECT sqlite_version()") + ")";
            }

            Console.WriteLine($"side-by-side on SQLCipher {version}, {Library}: {rows:N0} rows, {lookups:N0} indexed reads, {scans} full scans, {updates:N0} updates; " +
                              $"page size 4096, synchronous={synchronous}, page cache {(cacheMb == 0 ? "default (2 MB)" : cacheMb + " MB")}, {runs} interleaved runs, medians in ms");
            string[] workloads = ["insert", "indexed read", "full scan", "update"];
            foreach (var journalMode in new[] { "DELETE", "WAL" })
            {
                var plain = workloads.ToDictionary(w => w, _ => new List<double>());
                var keyed = workloads.ToDictionary(w => w, _ => new List<double>());
                for (var run = 0; run < runs; run++)
                {
                    foreach (var (samples, withKey) in new[] { (plain, false), (keyed, true) })
                    {
                        var path = Path.Combine(root, $"{journalMode}-{run}-{(withKey ? "keyed" : "plain")}.db");
                        var times = SideBySide.RunWorkloads($"Data Source={path};Pooling=False", journalMode, synchronous, cacheMb, 0, rows, lookups, scans, updates,
                            withKey ? Key : null);
                        if (withKey && File.ReadAllBytes(path).AsSpan(0, 16).SequenceEqual("SQLite format 3\0"u8))
                        {
                            throw new InvalidOperationException("The keyed SQLCipher database was written in plaintext: the library is not SQLCipher.");
                        }

                        SideBySide.RecordAndDelete(path, times, samples);
                    }
                }

                Console.WriteLine();
                Console.WriteLine($"journal_mode={journalMode}");
                Console.WriteLine("| workload | SQLCipher library, no key ms | SQLCipher keyed ms | ratio |");
                Console.WriteLine("|---|---:|---:|---:|");
                foreach (var workload in workloads)
                {
                    var p = SideBySide.Median(plain[workload]);
                    var k = SideBySide.Median(keyed[workload]);
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {workload} | {p:F1} | {k:F1} | {k / p:F3} |"));
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

    // SQLCipher 3's defaults (AES-256-CBC, HMAC-SHA1 per page, PBKDF2 64,000 iterations) with TDE's page size.
    private static void Key(SqliteConnection db) =>
        SideBySide.Exec(db, "PRAGMA key = 'side-by-side passphrase'; PRAGMA cipher_page_size = 4096;");

    private static string Scalar(SqliteConnection db, string sql)
    {
        using var command = db.CreateCommand();
        command.CommandText = sql;
        return Convert.ToString(command.ExecuteScalar(), CultureInfo.InvariantCulture) ?? "";
    }

    // The library is a system package: installed when missing and possible, else a loud failure.
    private static void EnsureLibrary()
    {
        if (File.Exists(Library))
        {
            return;
        }

        if (Environment.UserName == "root" && File.Exists("/usr/bin/apt-get"))
        {
            using var install = System.Diagnostics.Process.Start("/bin/sh", ["-c", "apt-get install -y -qq libsqlcipher0 >/dev/null || (apt-get update -qq && apt-get install -y -qq libsqlcipher0 >/dev/null)"]);
            install.WaitForExit();
        }

        if (!File.Exists(Library))
        {
            throw new InvalidOperationException($"SQLCipher is not installed ({Library}). Install it with 'sudo apt-get install -y libsqlcipher0' and retry.");
        }
    }
}
