using System.Diagnostics;
using System.Text;
using Microsoft.Data.Sqlite;

namespace TdeEngine.Sqlite.Tests;

/// <summary>What is on disk: no plaintext in any file the engine writes, and plain SQLite refuses the file.</summary>
public sealed class OnDiskTests : IDisposable
{
    private readonly DatabaseFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData("DELETE")]
    [InlineData("WAL")]
    public void No_Chinook_name_appears_in_the_database_its_journal_or_WAL(string journalMode)
    {
        using var db = _dir.OpenTde("chinook.db");
        db.Exec($"PRAGMA journal_mode={journalMode}; PRAGMA wal_autocheckpoint=0;");
        Chinook.Load(db);

        // Keep a write transaction open so the rollback journal (or the WAL) exists while we look.
        using (var tx = db.BeginTransaction())
        {
            db.Exec("UPDATE Artist SET Name = Name || ' '; UPDATE Track SET Composer = coalesce(Composer, '') || ' ';");
            var files = Directory.GetFiles(_dir.Path);
            Assert.Contains(files, f => f.EndsWith(journalMode == "WAL" ? "-wal" : "-journal", StringComparison.Ordinal));
            AssertNoPlaintext(files);
            tx.Rollback();
        }

        AssertNoPlaintext(Directory.GetFiles(_dir.Path));
    }

    [Fact]
    public void Temp_files_of_a_spilling_sort_hold_no_plaintext()
    {
        using var db = _dir.OpenTde("chinook.db");
        Chinook.Load(db);
        db.Exec("PRAGMA temp_store=FILE; PRAGMA cache_size=-64;");
        using var command = db.CreateCommand();
        // A sort far larger than the cache spills to temp files: track names, repeated.
        command.CommandText = "WITH x(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM x WHERE value < 8) " +
            "SELECT t.Name || t.Composer || x.value FROM Track t JOIN x ORDER BY 1 DESC";
        using var reader = command.ExecuteReader();
        Assert.True(reader.Read());   // the sorter's temp files are open now

        var tempFiles = OpenDeletedFiles();
        Assert.NotEmpty(tempFiles);
        foreach (var (fd, content) in tempFiles)
        {
            var text = Encoding.UTF8.GetString(content);
            foreach (var name in Chinook.SampleNames)
            {
                Assert.False(text.Contains(name, StringComparison.Ordinal), $"temp file fd {fd} holds '{name}'");
            }
        }
    }

    [Fact]
    public void Plain_SQLite_refuses_a_TDE_file()
    {
        using (var db = _dir.OpenTde("sealed.db"))
        {
            db.Exec("CREATE TABLE t(x); INSERT INTO t VALUES ('hello');");
        }

        using var plain = new SqliteConnection($"Data Source={_dir.File("sealed.db")};Mode=ReadOnly;Pooling=False");
        var e = Assert.Throws<SqliteException>(() =>
        {
            plain.Open();
            plain.Scalar<long>("SELECT count(*) FROM sqlite_schema");
        });
        Assert.Equal(26, e.SqliteErrorCode);   // SQLITE_NOTADB

        var shell = Run("sqlite3", _dir.File("sealed.db"), "SELECT * FROM t;");
        Assert.NotEqual(0, shell.ExitCode);
        Assert.Contains("not a database", shell.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("hello", shell.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void The_file_starts_with_the_envelope_and_a_new_database_gets_the_reserve()
    {
        using (var db = _dir.OpenTde("new.db"))
        {
            db.Exec("CREATE TABLE t(x)");
            Assert.Equal(4096L, db.Scalar<long>("PRAGMA page_size"));
        }

        var bytes = File.ReadAllBytes(_dir.File("new.db"));
        Assert.Equal("TDESQLv1", Encoding.ASCII.GetString(bytes, 2048, 8));   // sequence 1 lives in slot B
        Assert.Equal(0, (bytes.Length - 4096) % 4096);
        Assert.Equal(-1, bytes.AsSpan().IndexOf("SQLite format 3"u8));
    }

    private static void AssertNoPlaintext(IEnumerable<string> files)
    {
        foreach (var file in files)
        {
            var text = Encoding.UTF8.GetString(ReadShared(file));
            foreach (var name in Chinook.SampleNames)
            {
                Assert.False(text.Contains(name, StringComparison.Ordinal), $"{Path.GetFileName(file)} holds '{name}'");
            }
        }
    }

    private static byte[] ReadShared(string file)
    {
        using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        using var memory = new MemoryStream();
        stream.CopyTo(memory);
        return memory.ToArray();
    }

    // SQLite unlinks its temp files right after creating them; they remain reachable through /proc/self/fd.
    private static List<(string Fd, byte[] Content)> OpenDeletedFiles()
    {
        var result = new List<(string, byte[])>();
        foreach (var fd in Directory.GetFiles("/proc/self/fd"))
        {
            string? target;
            try
            {
                target = new FileInfo(fd).LinkTarget;
            }
            catch (IOException)
            {
                continue;
            }

            if (target is not null && target.EndsWith("(deleted)", StringComparison.Ordinal) && target.Contains("etilqs", StringComparison.Ordinal))
            {
                result.Add((fd, ReadShared(fd)));
            }
        }

        return result;
    }

    internal static (int ExitCode, string Stdout, string Stderr) Run(string program, params string[] args)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        Process process;
        try
        {
            process = Process.Start(start)!;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            throw new InvalidOperationException($"'{program}' is not installed: run 'apt-get install -y {program}' (test.sh does).");
        }

        using (process)
        {
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEnd();
            process.WaitForExit();
            return (process.ExitCode, stdout.Result, stderr);
        }
    }
}
