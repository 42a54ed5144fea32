using System.Globalization;
using System.Diagnostics;
using System.Text.Json;
using Microsoft.Data.Sqlite;

namespace TdeEngine.Cli.Tests;

public sealed class DbCommandTests : IDisposable
{
    private readonly string _home = Path.Combine(Path.GetTempPath(), "tde-cli-db-" + Guid.NewGuid().ToString("N"));

    public DbCommandTests() => Directory.CreateDirectory(_home);

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        Directory.Delete(_home, recursive: true);
    }

    private string File(string name) => Path.Combine(_home, name);

    private CliProcess.Result Ok(params string[] args)
    {
        var result = CliProcess.Run(_home, args);
        Assert.True(result.ExitCode == 0, $"tde {string.Join(' ', args)} exited {result.ExitCode}: {result.Stdout}{result.Stderr}");
        return result;
    }

    [Fact]
    public void Create_sql_and_status_work_across_processes()
    {
        Ok("db", "create", File("a.db"), "--cipher", "aegis-256");
        var created = JsonDocument.Parse(Ok("db", "status", File("a.db"), "--json").Stdout).RootElement;
        Assert.Equal(0, created.GetProperty("PageCount").GetInt64());
        Assert.True(created.GetProperty("Empty").GetBoolean());
        Assert.Contains("pages:           0 (an empty database", Ok("db", "status", File("a.db")).Stdout, StringComparison.Ordinal);
        Ok("db", "sql", File("a.db"), "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT); INSERT INTO t(name) VALUES ('Ada'), ('Grace');");

        var rows = Ok("db", "sql", File("a.db"), "SELECT id, name FROM t ORDER BY id").Stdout;
        var status = JsonDocument.Parse(Ok("db", "status", File("a.db"), "--json").Stdout).RootElement;

        Assert.Equal("1|Ada\n2|Grace\n", rows.Replace("\r", "", StringComparison.Ordinal));
        Assert.Equal("aegis-256", status.GetProperty("Cipher").GetString());
        Assert.Equal(68, status.GetProperty("ReservedBytes").GetInt32());
        Assert.False(status.GetProperty("Empty").GetBoolean());
        Assert.Equal(status.GetProperty("PageCount").GetInt64(), status.GetProperty("PagesPerDekVersion").GetProperty("1").GetInt64());
        Assert.StartsWith("acs:kms:", status.GetProperty("KmsKeyArn").GetString(), StringComparison.Ordinal);

        // The DEK calls of 'tde db' go through the gateway: audited like 'tde kms' calls.
        var lookup = Ok("audit", "LookupEvents", "--json").Stdout;
        var events = JsonDocument.Parse(lookup).RootElement.GetProperty("Events").EnumerateArray()
            .Select(e => (Name: e.GetProperty("eventName").GetString(), Agent: e.GetProperty("userAgent").GetString())).ToList();
        Assert.Contains(("GenerateDataKey", "tde-cli"), events);
        Assert.Contains(("Decrypt", "tde-cli"), events);
        Assert.Equal(0, CliProcess.Run(_home, "audit", "verify").ExitCode);
    }

    [Fact]
    public void Verify_passes_an_intact_file_and_names_the_bad_pages_of_a_tampered_one()
    {
        Ok("db", "create", File("v.db"));
        Ok("db", "sql", File("v.db"), "CREATE TABLE t(v TEXT); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 400) INSERT INTO t SELECT printf('%0100d', i) FROM n;");
        Assert.Contains("authenticate, and PRAGMA integrity_check is ok", Ok("db", "verify", File("v.db")).Stdout, StringComparison.Ordinal);

        using (var stream = new FileStream(File("v.db"), FileMode.Open))
        {
            stream.Position = 4096 + 4096 + 500;   // page 2
            var b = stream.ReadByte();
            stream.Position -= 1;
            stream.WriteByte((byte)(b ^ 0x80));
        }

        var result = CliProcess.Run(_home, "db", "verify", File("v.db"), "--json");
        Assert.Equal(1, result.ExitCode);
        var json = JsonDocument.Parse(result.Stdout).RootElement;
        Assert.Equal([2], json.GetProperty("BadPages").EnumerateArray().Select(p => p.GetInt64()));
        Assert.False(json.GetProperty("Intact").GetBoolean());
        Assert.False(json.GetProperty("InterruptedTransaction").GetBoolean());   // no rollback journal beside it: restore from a backup
    }

    [Fact]
    public void Rewrap_moves_the_DEK_to_another_key_and_is_audited()
    {
        Ok("db", "create", File("r.db"));
        Ok("db", "sql", File("r.db"), "CREATE TABLE t(v TEXT); INSERT INTO t VALUES ('kept');");
        var key = JsonDocument.Parse(Ok("kms", "CreateKey", "--Description", "rewrap target").Stdout).RootElement.GetProperty("KeyMetadata");
        var pagesBefore = System.IO.File.ReadAllBytes(File("r.db"))[4096..];

        var rewrapped = Ok("db", "rewrap", File("r.db"), "--key", key.GetProperty("KeyId").GetString()!).Stdout;

        Assert.Contains(key.GetProperty("Arn").GetString()!, rewrapped, StringComparison.Ordinal);
        var status = JsonDocument.Parse(Ok("db", "status", File("r.db"), "--json").Stdout).RootElement;
        Assert.Equal(key.GetProperty("Arn").GetString(), status.GetProperty("KmsKeyArn").GetString());
        Assert.Equal(pagesBefore, System.IO.File.ReadAllBytes(File("r.db"))[4096..]);
        Assert.Equal("kept\n", Ok("db", "sql", File("r.db"), "SELECT v FROM t").Stdout.Replace("\r", "", StringComparison.Ordinal));

        var events = JsonDocument.Parse(Ok("audit", "LookupEvents", "--EventName", "ReEncrypt", "--json").Stdout).RootElement.GetProperty("Events");
        Assert.Equal(1, events.GetArrayLength());
        Assert.Equal(key.GetProperty("KeyId").GetString(), events[0].GetProperty("requestParameters").GetProperty("DestinationKeyId").GetString());
    }

    [Fact]
    public void Backup_writes_a_verified_TDE_copy_under_its_own_DEK_and_another_key_on_request()
    {
        Ok("db", "create", File("live.db"), "--cipher", "aegis-256", "--page-size", "8192");
        Ok("db", "sql", File("live.db"), "PRAGMA journal_mode=WAL; CREATE TABLE t(v TEXT); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500) INSERT INTO t SELECT 'row ' || i FROM n;");
        var key = JsonDocument.Parse(Ok("kms", "CreateKey", "--Description", "backups").Stdout).RootElement.GetProperty("KeyMetadata");

        var printed = Ok("db", "backup", File("live.db"), "--out", File("copy.db"), "--key", key.GetProperty("KeyId").GetString()!).Stdout;

        Assert.Contains("verified", printed, StringComparison.Ordinal);
        var source = JsonDocument.Parse(Ok("db", "status", File("live.db"), "--json").Stdout).RootElement;
        var copy = JsonDocument.Parse(Ok("db", "status", File("copy.db"), "--json").Stdout).RootElement;
        Assert.NotEqual(source.GetProperty("DatabaseId").GetString(), copy.GetProperty("DatabaseId").GetString());
        Assert.Equal(key.GetProperty("Arn").GetString(), copy.GetProperty("KmsKeyArn").GetString());
        Assert.Equal("aegis-256", copy.GetProperty("Cipher").GetString());
        Assert.Equal(8192, copy.GetProperty("PageSize").GetInt32());
        Assert.Equal("500|125250\n", Ok("db", "sql", File("copy.db"), "SELECT count(*), sum(CAST(substr(v, 5) AS INTEGER)) FROM t").Stdout.Replace("\r", "", StringComparison.Ordinal));

        // 'tde db sql' opens with a file: URI, so VACUUM INTO takes the target's parameters too.
        Ok("db", "sql", File("live.db"), $"VACUUM INTO 'file:{File("vacuumed.db")}?cipher=aegis-256&page_size=8192'");
        Assert.Equal("aegis-256", JsonDocument.Parse(Ok("db", "status", File("vacuumed.db"), "--json").Stdout).RootElement.GetProperty("Cipher").GetString());
        Assert.Equal("500\n", Ok("db", "sql", File("vacuumed.db"), "SELECT count(*) FROM t").Stdout.Replace("\r", "", StringComparison.Ordinal));

        // An existing destination is never overwritten.
        var again = CliProcess.Run(_home, "db", "backup", File("live.db"), "--out", File("copy.db"));
        Assert.Equal(1, again.ExitCode);
        Assert.Contains("already exists", again.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Sql_reads_statements_from_stdin()
    {
        Ok("db", "create", File("s.db"));
        var start = new ProcessStartInfo("dotnet") { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "tde.dll"));
        start.ArgumentList.Add("db");
        start.ArgumentList.Add("sql");
        start.ArgumentList.Add(File("s.db"));
        start.Environment["TDE_HOME"] = _home;
        using var process = Process.Start(start)!;
        process.StandardInput.Write("CREATE TABLE t(x);\nINSERT INTO t VALUES (41);\nSELECT x + 1 FROM t;\n");
        process.StandardInput.Close();
        var output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();

        Assert.Equal(0, process.ExitCode);
        Assert.Equal("42", output.Trim());
    }

    [Fact]
    public void Encrypt_and_decrypt_round_trip_through_the_CLI()
    {
        using (var plain = new SqliteConnection($"Data Source={File("plain.db")};Pooling=False"))
        {
            plain.Open();
            using var command = plain.CreateCommand();
            command.CommandText = "CREATE TABLE t(name TEXT); INSERT INTO t VALUES ('Hedy Lamarr'), ('Katherine Johnson');";
            command.ExecuteNonQuery();
        }

        Ok("db", "encrypt", File("plain.db"), "--out", File("sealed.db"));
        Ok("db", "decrypt", File("sealed.db"), "--out", File("back.db"));

        Assert.DoesNotContain("Hedy", System.Text.Encoding.UTF8.GetString(System.IO.File.ReadAllBytes(File("sealed.db"))), StringComparison.Ordinal);
        Assert.Equal("Hedy Lamarr\nKatherine Johnson\n", Ok("db", "sql", File("sealed.db"), "SELECT name FROM t ORDER BY name").Stdout);
        using var back = new SqliteConnection($"Data Source={File("back.db")};Mode=ReadOnly;Pooling=False");
        back.Open();
        using var count = back.CreateCommand();
        count.CommandText = "SELECT count(*) FROM t";
        Assert.Equal(2L, count.ExecuteScalar());
    }

    [Fact]
    public void Errors_name_the_cause_and_exit_1()
    {
        System.IO.File.WriteAllText(File("text.db"), new string('x', 5000));
        Ok("db", "create", File("k.db"), "--key", "alias/acs/ecs");

        var notTde = CliProcess.Run(_home, "db", "sql", File("text.db"), "SELECT 1");
        var badSql = CliProcess.Run(_home, "db", "sql", File("k.db"), "SELECT * FROM missing");
        var badKey = CliProcess.Run(_home, "db", "create", File("n.db"), "--key", "alias/nothing-here");
        var status = CliProcess.Run(_home, "db", "status", File("text.db"));

        Assert.Equal(1, notTde.ExitCode);
        Assert.Contains("Tde.NotTdeDatabase", notTde.Stderr, StringComparison.Ordinal);
        Assert.Equal(1, badSql.ExitCode);
        Assert.Contains("no such table", badSql.Stderr, StringComparison.Ordinal);
        Assert.Equal(1, badKey.ExitCode);
        Assert.Contains("Forbidden.AliasNotFound", badKey.Stderr, StringComparison.Ordinal);
        Assert.Equal(1, status.ExitCode);
        Assert.Contains("Tde.NotTdeDatabase", status.Stderr, StringComparison.Ordinal);
    }


    [Fact]
    public void A_missing_output_folder_is_named_not_a_temporary_file_or_an_SQLite_error()
    {
        Ok("db", "create", File("src.db"));
        Ok("db", "sql", File("src.db"), "CREATE TABLE t(v); INSERT INTO t VALUES (1);");
        using (var plain = new SqliteConnection($"Data Source={File("p.db")};Pooling=False"))
        {
            plain.Open();
            using var command = plain.CreateCommand();
            command.CommandText = "CREATE TABLE t(v)";
            command.ExecuteNonQuery();
        }

        var missing = File("no-such-folder");
        foreach (var args in new[]
        {
            new[] { "db", "create", Path.Combine(missing, "a.db") },
            new[] { "db", "encrypt", File("p.db"), "--out", Path.Combine(missing, "a.db") },
            new[] { "db", "decrypt", File("src.db"), "--out", Path.Combine(missing, "a.db") },
            new[] { "db", "backup", File("src.db"), "--out", Path.Combine(missing, "a.db") },
            new[] { "audit", "export", "--out", Path.Combine(missing, "a.db") },
        })
        {
            var result = CliProcess.Run(_home, args);
            Assert.True(result.ExitCode == 1, $"tde {string.Join(' ', args)}: exit {result.ExitCode} {result.Stdout}{result.Stderr}");
            Assert.Equal($"Error: Tde.Failed: The folder of '{Path.Combine(missing, "a.db")}' does not exist; create it first.\n", result.Stderr);
        }

        Assert.False(Directory.Exists(missing));
    }

    [Fact]
    public void Mistyped_options_are_refused_before_anything_is_touched()
    {
        using (var plain = new SqliteConnection($"Data Source={File("p.db")};Pooling=False"))
        {
            plain.Open();
            using var command = plain.CreateCommand();
            command.CommandText = "CREATE TABLE t(v TEXT); INSERT INTO t VALUES ('still plain');";
            command.ExecuteNonQuery();
        }

        var before = System.IO.File.ReadAllBytes(File("p.db"));

        // '--ot' for '--out' once meant "encrypt in place": the plain file must stay as it was.
        var typo = CliProcess.Run(_home, "db", "encrypt", File("p.db"), "--ot", File("copy.db"));
        var badCipher = CliProcess.Run(_home, "db", "create", File("c.db"), "--cipher", "rot13");
        var badPageSize = CliProcess.Run(_home, "db", "create", File("c.db"), "--page-size", "4k");
        var smallPageSize = CliProcess.Run(_home, "db", "create", File("c.db"), "--page-size", "512");
        var oddPageSize = CliProcess.Run(_home, "db", "create", File("c.db"), "--page-size", "1000");
        var badBatch = CliProcess.Run(_home, "db", "rekey", File("c.db"), "--batch-pages", "0");
        var extra = CliProcess.Run(_home, "db", "status", File("p.db"), File("c.db"));
        var noFile = CliProcess.Run(_home, "db", "verify");

        Assert.Equal(before, System.IO.File.ReadAllBytes(File("p.db")));
        Assert.False(System.IO.File.Exists(File("copy.db")));
        Assert.False(System.IO.File.Exists(File("c.db")));
        foreach (var (result, message) in new[]
        {
            (typo, "unknown option '--ot'"),
            (badCipher, "--cipher must be aes-256-gcm or aegis-256, not 'rot13'"),
            (badPageSize, "--page-size must be a power of two from 1024 to 65536, not '4k'"),
            (smallPageSize, "--page-size must be a power of two from 1024 to 65536, not '512'"),
            (oddPageSize, "--page-size must be a power of two from 1024 to 65536, not '1000'"),
            (badBatch, "--batch-pages must be a whole number from 1 to 1048576, not '0'"),
            (extra, "unexpected argument"),
            (noFile, "missing FILE"),
        })
        {
            Assert.True(result.ExitCode == 2, $"{message}: exit {result.ExitCode} {result.Stdout}{result.Stderr}");
            Assert.Contains(message, result.Stderr, StringComparison.Ordinal);
            Assert.DoesNotContain("   at ", result.Stderr, StringComparison.Ordinal);
        }

        // SQL is taken verbatim, '--' comments included.
        Ok("db", "create", File("s.db"));
        Assert.Equal("1\n", Ok("db", "sql", File("s.db"), "--", "a", "comment\nSELECT", "1").Stdout.Replace("\r", "", StringComparison.Ordinal));
    }
    [Fact]
    public void A_rekey_killed_at_any_moment_leaves_a_readable_file_and_finishes_when_run_again()
    {
        var random = new Random(11);
        var resumed = 0;
        for (var attempt = 0; attempt < 4; attempt++)
        {
            var name = File($"rekey{attempt}.db");
            Ok("db", "create", name);
            Ok("db", "sql", name, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) INSERT INTO t(v) SELECT printf('row %d %s', i, hex(randomblob(60))) FROM n;");

            // SIGKILL (Process.Kill on Unix): the first time early (most likely before the new DEK),
            // then at a random moment after the first batch reported (between batches, or inside one).
            var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var arg in new[] { Path.Combine(AppContext.BaseDirectory, "tde.dll"), "db", "rekey", name, "--batch-pages", "4" })
            {
                start.ArgumentList.Add(arg);
            }

            start.Environment["TDE_HOME"] = _home;
            using (var process = Process.Start(start)!)
            {
                if (attempt > 0)
                {
                    Assert.Contains("pages checked", process.StandardOutput.ReadLine(), StringComparison.Ordinal);
                }

                Thread.Sleep(attempt == 0 ? 200 : random.Next(0, 400));
                process.Kill();
                process.WaitForExit();
            }

            // Whatever the moment, every row reads: pages under the old DEK and the new one side by side.
            Assert.Equal("20000", Ok("db", "sql", name, "SELECT count(*) FROM t WHERE v LIKE 'row %'").Stdout.Trim());
            if (attempt > 0)
            {
                Assert.Contains("re-encryption:   running or interrupted", Ok("db", "status", name).Stdout, StringComparison.Ordinal);
            }

            // The envelope the kill left carries a valid MAC: the open above checked it ('db sql').
            Assert.True(JsonDocument.Parse(Ok("db", "status", name, "--json").Stdout).RootElement.GetProperty("EnvelopeAuthenticated").GetBoolean());

            // Run again: it repairs and resumes (or starts, if the kill came first), and ends with one DEK.
            var again = Ok("db", "rekey", name);
            Assert.Contains("every page is under DEK version", again.Stdout, StringComparison.Ordinal);
            resumed += again.Stdout.Contains("resumed: ", StringComparison.Ordinal) ? 1 : 0;
            var status = JsonDocument.Parse(Ok("db", "status", name, "--json").Stdout).RootElement;
            var version = status.GetProperty("ActiveDekVersion").GetInt64();
            Assert.True(version >= 2);
            Assert.Equal(1, status.GetProperty("Deks").GetArrayLength());
            Assert.Equal(status.GetProperty("PageCount").GetInt64(), status.GetProperty("PagesPerDekVersion").GetProperty(version.ToString(CultureInfo.InvariantCulture)).GetInt64());
            Assert.True(status.GetProperty("EnvelopeAuthenticated").GetBoolean());
            Assert.True(status.GetProperty("EnvelopeDowngradeProtected").GetBoolean());
            Assert.Contains("envelope:        authenticated (HMAC under the DEK; checked on open, not by status)\n", Ok("db", "status", name).Stdout.Replace("\r", "", StringComparison.Ordinal), StringComparison.Ordinal);
            Assert.Contains("PRAGMA integrity_check is ok", Ok("db", "verify", name).Stdout, StringComparison.Ordinal);   // verify checks the MAC too
            Assert.False(System.IO.File.Exists(name + "-tderekey"));
        }

        Assert.True(resumed >= 3, $"{resumed} runs resumed: the kills after the first batch must leave a re-encryption to resume");
    }

    [Fact]
    public void Killing_an_in_place_encryption_midway_never_leaves_a_file_that_cannot_be_opened()
    {
        var random = new Random(7);
        for (var attempt = 0; attempt < 8; attempt++)
        {
            var name = File($"big{attempt}.db");
            using (var plain = new SqliteConnection($"Data Source={name};Pooling=False"))
            {
                plain.Open();
                using var command = plain.CreateCommand();
                command.CommandText = "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);" +
                    "WITH x(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM x WHERE n < 60000) INSERT INTO t(v) SELECT printf('row %d %s', n, hex(randomblob(40))) FROM x;";
                command.ExecuteNonQuery();
            }

            var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
            start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "tde.dll"));
            foreach (var arg in new[] { "db", "encrypt", name })
            {
                start.ArgumentList.Add(arg);
            }

            start.Environment["TDE_HOME"] = _home;
            using (var process = Process.Start(start)!)
            {
                Thread.Sleep(random.Next(100, 900));
                process.Kill();
                process.WaitForExit();
            }

            // Whatever the moment of the kill: the file is either the intact plaintext original or the complete TDE copy.
            var header = new byte[16];
            using (var stream = System.IO.File.OpenRead(name))
            {
                stream.ReadExactly(header);
            }

            var rows = System.Text.Encoding.ASCII.GetString(header).StartsWith("SQLite format 3", StringComparison.Ordinal)
                ? PlainCount(name)
                : long.Parse(Ok("db", "sql", name, "SELECT count(*) FROM t WHERE v LIKE 'row %'").Stdout.Trim(), System.Globalization.CultureInfo.InvariantCulture);
            Assert.Equal(60000, rows);
        }
    }

    private static long PlainCount(string path)
    {
        using var plain = new SqliteConnection($"Data Source={path};Mode=ReadOnly;Pooling=False");
        plain.Open();
        using var command = plain.CreateCommand();
        command.CommandText = "PRAGMA integrity_check";
        Assert.Equal("ok", command.ExecuteScalar());
        command.CommandText = "SELECT count(*) FROM t";
        return (long)command.ExecuteScalar()!;
    }
}
