using System.Diagnostics;
using Microsoft.Data.Sqlite;

namespace TdeEngine.Sqlite.Tests;

/// <summary>
/// A writer child process is killed with SIGKILL at random moments, 50 times per journal mode.
/// After every kill the database must pass <c>PRAGMA integrity_check</c> and hold every
/// transaction the writer reported committed. Every other run, the writer and the checking
/// connection read through memory-mapped I/O (<c>mmap_size</c>). The same child also resizes a file
/// under a reader that maps it.
/// </summary>
public sealed class CrashTests : IDisposable
{
    private const int KillsPerMode = 50;
    private readonly DatabaseFolder _dir = new();
    private readonly string _kmsHome = Path.Combine(Path.GetTempPath(), "tde-crash-kms-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        _dir.Dispose();
        SqliteConnection.ClearAllPools();
        try
        {
            Directory.Delete(_kmsHome, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    [Theory]
    [InlineData("DELETE")]
    [InlineData("WAL")]
    public void Every_committed_transaction_survives_SIGKILL_and_the_database_stays_intact(string journalMode)
    {
        var database = _dir.File("crash.db");
        var random = new Random(journalMode.Length);
        using var kms = Kms.KeyManagement.KeyManagementService.Open(new Kms.KmsOptions { Home = _kmsHome });
        TdeSqlite.Register(kms, new Storage.TdeStorageOptions { TimeProvider = TdeTestEnvironment.Clock });
        try
        {
            long reported = 0;
            for (var kill = 0; kill < KillsPerMode; kill++)
            {
                var mapped = kill % 2 == 1;
                reported = Math.Max(reported, RunAndKill(database, journalMode, random.Next(5, 120), mapped));

                using var db = new SqliteConnection(mapped ? $"Data Source=file:{database}?vfs=tde&mmap_size=268435456;Pooling=False" : TdeSqlite.ConnectionString(database));
                db.Open();
                Assert.Equal(mapped ? 268435456L : 0L, db.Scalar<long>("PRAGMA mmap_size"));
                Assert.Equal("ok", db.Scalar<string>("PRAGMA integrity_check"));
                var count = db.Scalar<long>("SELECT count(*) FROM t");
                var max = db.Scalar<long>("SELECT coalesce(max(n), 0) FROM t");
                Assert.True(max >= reported, $"kill {kill}: the writer reported {reported} committed, the database holds up to {max}");
                Assert.Equal(max, count);   // no gaps: transactions are all-or-nothing
                reported = max;
            }

            Assert.True(reported >= KillsPerMode, $"only {reported} transactions were committed over {KillsPerMode} runs");   // each run commits at least once before the kill
        }
        finally
        {
            TdeTestEnvironment.EnsureRegistered();
        }
    }

    [Theory]
    [InlineData("DELETE")]
    [InlineData("WAL")]
    public void A_mapped_reader_follows_a_file_that_another_process_shrinks_and_grows(string journalMode)
    {
        var database = _dir.File("resize.db");
        using var kms = Kms.KeyManagement.KeyManagementService.Open(new Kms.KmsOptions { Home = _kmsHome });
        TdeSqlite.Register(kms, new Storage.TdeStorageOptions { TimeProvider = TdeTestEnvironment.Clock });
        try
        {
            using (var setup = new SqliteConnection(TdeSqlite.ConnectionString(database)))
            {
                setup.Open();
                setup.Exec($"PRAGMA journal_mode={journalMode}; CREATE TABLE t(n INTEGER PRIMARY KEY, payload TEXT NOT NULL);" +
                           "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 3000) INSERT INTO t SELECT i, printf('%03000d', i) FROM k;");
                setup.Exec(journalMode == "WAL" ? "PRAGMA wal_checkpoint(TRUNCATE)" : "SELECT 1");
            }

            var large = new FileInfo(database).Length;
            using var reader = new SqliteConnection($"Data Source=file:{database}?vfs=tde&mmap_size=268435456;Pooling=False");
            reader.Open();
            Assert.Equal(3000L, reader.Scalar<long>("SELECT count(*) FROM t"));
            Assert.True(MemoryMappedReadTests.MappedBytes(database) >= large);   // the whole file is mapped now

            // Another process cuts the file to a fraction under the mapping: the reader must neither
            // touch the vanished pages (SIGBUS would end this test run) nor see stale rows.
            RunToEnd(database, journalMode, "resize", "100", "0");
            Assert.True(new FileInfo(database).Length < large / 4, $"{new FileInfo(database).Length} of {large} bytes");
            Assert.Equal(100L, reader.Scalar<long>("SELECT count(*) FROM t"));
            Assert.Equal("ok", reader.Scalar<string>("PRAGMA integrity_check"));

            // ...and then past its old size.
            RunToEnd(database, journalMode, "resize", "100", "5000");
            Assert.True(new FileInfo(database).Length > large);
            Assert.Equal(5100L, reader.Scalar<long>("SELECT count(*) FROM t"));
            Assert.Equal(5000L * 3000, reader.Scalar<long>("SELECT sum(length(payload)) FROM t WHERE n > 100"));
            Assert.Equal("ok", reader.Scalar<string>("PRAGMA integrity_check"));
        }
        finally
        {
            TdeTestEnvironment.EnsureRegistered();
        }
    }

    [Fact]
    public async Task A_new_database_killed_in_its_first_transaction_after_spilling_pages_opens_empty()
    {
        var database = _dir.File("first.db");
        using var kms = Kms.KeyManagement.KeyManagementService.Open(new Kms.KmsOptions { Home = _kmsHome });
        TdeSqlite.Register(kms, new Storage.TdeStorageOptions { TimeProvider = TdeTestEnvironment.Clock });
        try
        {
            var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var argument in new[] { Path.Combine(AppContext.BaseDirectory, "TdeEngine.CrashWriter.dll"), database, "DELETE", "first", "400" })
            {
                start.ArgumentList.Add(argument);
            }

            start.Environment["TDE_HOME"] = _kmsHome;
            using (var process = Process.Start(start)!)
            {
                var stderr = process.StandardError.ReadToEndAsync();
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
                string? line = null;
                try
                {
                    line = await process.StandardOutput.ReadLineAsync(timeout.Token);
                }
                catch (OperationCanceledException)
                {
                }

                if (line != "spilled")
                {
                    process.Kill();
                    Assert.Fail($"The writer did not spill its first transaction ({line}): " + await stderr);
                }

                process.Kill();   // SIGKILL: the hot journal stays, the file has pages but no page 1
                await process.WaitForExitAsync();
                Assert.Equal(137, process.ExitCode);
            }

            var file = File.ReadAllBytes(database);
            Assert.True(file.Length > Storage.Envelope.DatabaseEnvelope.RegionSize + 4096, $"{file.Length} bytes: nothing was spilled");
            Assert.False(file.AsSpan(Storage.Envelope.DatabaseEnvelope.RegionSize, 4096).ContainsAnyExcept((byte)0));
            Assert.True(File.Exists(database + "-journal"));

            // Verify reads the file as the crash left it and says what to do; a backup opens it,
            // which rolls the transaction back, and copies the empty database.
            var verification = TdeDatabases.Verify(database);
            Assert.True(verification.InterruptedTransaction);
            Assert.Contains("so that SQLite rolls it back", verification.Message, StringComparison.Ordinal);
            Assert.True(TdeDatabases.Backup(database, _dir.File("first-copy.db")).Intact);
            using (var copy = new SqliteConnection(TdeSqlite.ConnectionString(_dir.File("first-copy.db"))))
            {
                copy.Open();
                Assert.Equal(0L, copy.Scalar<long>("SELECT count(*) FROM sqlite_master"));
            }

            Assert.False(File.Exists(database + "-journal"));

            // An empty database, usable.
            using (var db = new SqliteConnection(TdeSqlite.ConnectionString(database)))
            {
                db.Open();
                Assert.Equal(0L, db.Scalar<long>("SELECT count(*) FROM sqlite_master"));
                db.Exec("CREATE TABLE t(n INTEGER PRIMARY KEY, payload TEXT NOT NULL); INSERT INTO t(payload) VALUES ('after the crash');");
            }

            Assert.False(File.Exists(database + "-journal"));
            Assert.True(TdeDatabases.Verify(database).Intact);
            using var again = new SqliteConnection(TdeSqlite.ConnectionString(database));
            again.Open();
            Assert.Equal("after the crash", again.Scalar<string>("SELECT payload FROM t"));
        }
        finally
        {
            TdeTestEnvironment.EnsureRegistered();
        }
    }

    private void RunToEnd(string database, string journalMode, params string[] command)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "TdeEngine.CrashWriter.dll"));
        start.ArgumentList.Add(database);
        start.ArgumentList.Add(journalMode);
        foreach (var argument in command)
        {
            start.ArgumentList.Add(argument);
        }

        start.Environment["TDE_HOME"] = _kmsHome;
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEnd();
        Assert.True(process.WaitForExit(TimeSpan.FromSeconds(60)), "the child did not finish in 60 s");
        Assert.True(process.ExitCode == 0 && stdout.Contains("resized", StringComparison.Ordinal), $"exit {process.ExitCode}: {stdout}{stderr.Result}");
    }

    // Starts the writer, lets it commit for a while, kills it with SIGKILL, returns the last commit it reported.
    private long RunAndKill(string database, string journalMode, int millisecondsAfterFirstCommit, bool mapped)
    {
        var writer = Path.Combine(AppContext.BaseDirectory, "TdeEngine.CrashWriter.dll");
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(writer);
        start.ArgumentList.Add(database);
        start.ArgumentList.Add(journalMode);
        if (mapped)
        {
            start.ArgumentList.Add("mmap");
        }
        start.Environment["TDE_HOME"] = _kmsHome;
        using var process = Process.Start(start)!;
        long last = 0;
        var firstCommit = new ManualResetEventSlim();
        var reader = Task.Run(() =>
        {
            string? line;
            while ((line = process.StandardOutput.ReadLine()) is not null)
            {
                if (line.StartsWith("committed ", StringComparison.Ordinal))
                {
                    Interlocked.Exchange(ref last, long.Parse(line["committed ".Length..], System.Globalization.CultureInfo.InvariantCulture));
                    firstCommit.Set();
                }
            }
        });
        var stderr = process.StandardError.ReadToEndAsync();

        if (!firstCommit.Wait(TimeSpan.FromSeconds(60)))
        {
            process.Kill();
            Assert.Fail("The crash writer did not commit within 60 s: " + stderr.Result);
        }

        Thread.Sleep(millisecondsAfterFirstCommit);
        process.Kill();   // SIGKILL on Linux: no flush, no finally, no atexit
        process.WaitForExit();
        reader.Wait(TimeSpan.FromSeconds(10));
        Assert.Equal(137, process.ExitCode);   // 128 + SIGKILL
        return Interlocked.Read(ref last);
    }
}
