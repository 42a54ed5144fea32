using System.Text;
using Microsoft.Data.Sqlite;
using TdeEngine.Storage.Pages;

namespace TdeEngine.Sqlite.Tests;

/// <summary>
/// Backups of a live TDE database with SQLite's own tools: <c>VACUUM INTO</c> and the online backup
/// API (<c>SqliteConnection.BackupDatabase</c>) write a TDE copy under a DEK of its own.
/// </summary>
public sealed class BackupTests : IDisposable
{
    private readonly DatabaseFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData("DELETE")]
    [InlineData("WAL")]
    public void VACUUM_INTO_writes_a_TDE_copy_under_a_DEK_of_its_own(string journalMode)
    {
        using var source = _dir.OpenTde("source.db");
        source.Exec($"PRAGMA journal_mode={journalMode}; PRAGMA wal_autocheckpoint=0;");
        Chinook.Load(source);
        // In WAL mode this commit is only in the WAL: the copy must hold it.
        source.Exec("UPDATE Artist SET Name = Name || ' (live)' WHERE ArtistId = 1");
        var target = _dir.File("backup.db");

        source.Exec($"VACUUM INTO '{target}'");

        AssertSealedCopy(_dir.File("source.db"), target);
        using var copy = _dir.OpenTde("backup.db");
        Assert.Equal("AC/DC (live)", copy.Scalar<string>("SELECT Name FROM Artist WHERE ArtistId = 1"));
        foreach (var sql in Chinook.Queries)
        {
            Assert.True(Chinook.Rows(source, sql).SequenceEqual(Chinook.Rows(copy, sql)), $"results differ for: {sql}");
        }

        Assert.Equal("ok", copy.Scalar<string>("PRAGMA integrity_check"));
        copy.Exec("INSERT INTO Genre(Name) VALUES ('restored')");   // the copy is a database like any other
        Assert.True(TdeDatabases.Verify(target).Intact);
    }

    [Fact]
    public void VACUUM_INTO_from_a_database_of_another_cipher_and_page_size_names_them_and_a_key_in_the_target_URI()
    {
        using var source = _dir.OpenTde("source.db", "cipher=aegis-256&page_size=8192");
        source.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t(v) SELECT 'row ' || i FROM " + SqlExtensions.Rows(3000));
        var key = TdeTestEnvironment.Kms.CreateKey(TdeTestEnvironment.Caller, new() { Description = "backups" }).KeyId;

        var target = _dir.File("backup.db");
        source.Exec($"VACUUM INTO 'file:{target}?cipher=aegis-256&page_size=8192&kms_key={key}'");

        var status = TdeDatabases.Status(target);
        Assert.Equal(PageCipherSuite.Aegis256, status.Cipher);
        Assert.Equal(8192, status.PageSize);
        Assert.EndsWith("key/" + key, status.KmsKeyArn, StringComparison.Ordinal);
        using var copy = _dir.OpenTde("backup.db");
        Assert.Equal(3000L, copy.Scalar<long>("SELECT count(*) FROM t"));
        Assert.Equal("row 2999", copy.Scalar<string>("SELECT v FROM t WHERE id = 2999"));
    }

    [Fact]
    public void VACUUM_INTO_a_target_of_other_geometry_fails_and_leaves_an_empty_TDE_file()
    {
        using var source = _dir.OpenTde("source.db", "cipher=aegis-256");
        source.Exec("CREATE TABLE t(x); INSERT INTO t VALUES ('kept');");
        var target = _dir.File("backup.db");

        // The default target is AES-256-GCM, whose pages keep other reserved bytes: SQLite cannot copy into it.
        Assert.Throws<SqliteException>(() => source.Exec($"VACUUM INTO '{target}'"));

        var left = TdeDatabases.Status(target);
        Assert.Equal(0, left.PageCount);
        Assert.Equal(Storage.Envelope.DatabaseEnvelope.RegionSize, new FileInfo(target).Length);
        Assert.Equal("kept", source.Scalar<string>("SELECT x FROM t"));

        // A second attempt that names the geometry (or a key) must not write into that file under
        // what it was created with: refused, with what to do.
        var uri = $"file:{target}?cipher=aegis-256";
        Assert.Throws<SqliteException>(() => source.Exec($"VACUUM INTO '{uri}'"));
        Assert.Equal(Storage.Errors.TdeStorageException.Codes.InvalidParameter, TdeSqlite.LastError?.Code);
        Assert.Contains("exists already, as an empty TDE database", TdeSqlite.LastError?.Message, StringComparison.Ordinal);
        Assert.Contains("cipher=aegis-256", TdeSqlite.LastError?.Message, StringComparison.Ordinal);

        File.Delete(target);
        source.Exec($"VACUUM INTO '{uri}'");
        Assert.Equal(PageCipherSuite.Aegis256, TdeDatabases.Status(target).Cipher);
        using var copy = _dir.OpenTde("backup.db");
        Assert.Equal("kept", copy.Scalar<string>("SELECT x FROM t"));
    }

    [Fact]
    public void An_empty_TDE_file_opened_read_write_with_another_key_id_is_refused()
    {
        using (_dir.OpenTde("empty.db"))
        {
        }

        var other = TdeTestEnvironment.Kms.CreateKey(TdeTestEnvironment.Caller, new() { Description = "another" }).KeyId;
        var e = Assert.Throws<SqliteException>(() => _dir.OpenTde("empty.db", $"kms_key={other}"));
        Assert.Equal(Storage.Errors.TdeStorageException.Codes.InvalidParameter, TdeSqlite.LastError?.Code);
        Assert.Contains("kms_key=" + other, TdeSqlite.LastError?.Message, StringComparison.Ordinal);
        Assert.NotEqual(0, e.SqliteErrorCode);

        // A read-only open creates nothing: not checked. Nor is an alias (telling which key it names
        // would take a KMS call the app's role may not be allowed, and an alias may move).
        using (_dir.OpenTde("empty.db", $"kms_key={other}&cipher=aegis-256&mode=ro"))
        {
        }

        using var byAlias = _dir.OpenTde("empty.db", "kms_key=alias/acs/rds&cipher=aes-256-gcm&page_size=4096");
        byAlias.Exec("CREATE TABLE t(x); INSERT INTO t VALUES (1);");

        // Once it holds pages, the parameters are what they always were for an existing database: not used.
        using var later = _dir.OpenTde("empty.db", $"kms_key={other}");
        Assert.Equal(1L, later.Scalar<long>("SELECT count(*) FROM t"));
    }

    [Fact]
    public void VACUUM_INTO_an_existing_database_is_refused_and_leaves_it_alone()
    {
        using (var existing = _dir.OpenTde("backup.db"))
        {
            existing.Exec("CREATE TABLE mine(x); INSERT INTO mine VALUES ('precious');");
        }

        var before = File.ReadAllBytes(_dir.File("backup.db"));
        using var source = _dir.OpenTde("source.db");
        source.Exec("CREATE TABLE t(x); INSERT INTO t VALUES (1);");

        var e = Assert.Throws<SqliteException>(() => source.Exec($"VACUUM INTO '{_dir.File("backup.db")}'"));
        Assert.Contains("output file already exists", e.Message, StringComparison.Ordinal);
        Assert.Equal(before, File.ReadAllBytes(_dir.File("backup.db")));
    }

    [Fact]
    public void VACUUM_INTO_a_target_on_the_unix_VFS_is_an_export_in_clear()
    {
        using var source = _dir.OpenTde("source.db", "mode=rwc");   // a file: URI connection: ATTACH and VACUUM INTO take URIs
        Chinook.Load(source);
        var target = _dir.File("plain.db");

        source.Exec($"VACUUM INTO 'file:{target}?vfs=unix'");

        using var plain = _dir.OpenPlain("plain.db", SqliteOpenMode.ReadOnly);
        Assert.Equal(275L, plain.Scalar<long>("SELECT count(*) FROM Artist"));
        Assert.Equal("ok", plain.Scalar<string>("PRAGMA integrity_check"));
    }

    [Fact]
    public void A_URI_connection_string_takes_any_path_and_gives_VACUUM_INTO_its_parameters()
    {
        var folder = Path.Combine(_dir.Path, "odd ?#% ;'name");
        Directory.CreateDirectory(folder);
        var path = Path.Combine(folder, "a?b#c%d.db");
        using var source = new SqliteConnection(TdeSqlite.UriConnectionString(path));
        source.Open();
        source.Exec("CREATE TABLE t(x); INSERT INTO t VALUES ('odd');");
        Assert.True(File.Exists(path));
        Assert.True(TdeDatabases.Status(path).PageCount > 0);

        var key = TdeTestEnvironment.Kms.CreateKey(TdeTestEnvironment.Caller, new() { Description = "copies" }).KeyId;
        var target = _dir.File("copy.db");
        source.Exec($"VACUUM INTO 'file:{target}?kms_key={key}'");
        Assert.EndsWith("key/" + key, TdeDatabases.Status(target).KmsKeyArn, StringComparison.Ordinal);

        using var readOnly = new SqliteConnection(TdeSqlite.UriConnectionString(path, SqliteOpenMode.ReadOnly));
        readOnly.Open();
        Assert.Equal("odd", readOnly.Scalar<string>("SELECT x FROM t"));
        Assert.Throws<SqliteException>(() => readOnly.Exec("INSERT INTO t VALUES ('no')"));
    }

    [Fact]
    public void The_online_backup_API_copies_a_live_database_into_a_new_TDE_file()
    {
        using var source = _dir.OpenTde("source.db");
        source.Exec("PRAGMA journal_mode=WAL");
        Chinook.Load(source);
        using var writer = _dir.OpenTde("source.db");
        writer.Exec("DELETE FROM InvoiceLine WHERE InvoiceLineId > 2000");

        using (var destination = _dir.OpenTde("backup.db"))
        {
            source.BackupDatabase(destination);
            Assert.Equal(2000L, destination.Scalar<long>("SELECT count(*) FROM InvoiceLine"));
            Assert.Equal("ok", destination.Scalar<string>("PRAGMA integrity_check"));
        }

        AssertSealedCopy(_dir.File("source.db"), _dir.File("backup.db"));
        using var copy = _dir.OpenTde("backup.db");
        foreach (var sql in Chinook.Queries)
        {
            Assert.True(Chinook.Rows(source, sql).SequenceEqual(Chinook.Rows(copy, sql)), $"results differ for: {sql}");
        }
    }

    [Fact]
    public async Task TdeDatabases_Backup_copies_a_database_while_a_writer_commits()
    {
        using var source = _dir.OpenTde("source.db", "cipher=aegis-256");
        source.Exec("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);");
        using var stop = new CancellationTokenSource();
        var committed = 0L;
        var writer = Task.Run(() =>
        {
            using var w = _dir.OpenTde("source.db");
            w.Exec("PRAGMA busy_timeout=10000");
            while (!stop.IsCancellationRequested)
            {
                w.Exec("INSERT INTO t(v) VALUES (hex(randomblob(200)))");
                Interlocked.Increment(ref committed);
            }
        });
        SpinWait.SpinUntil(() => Interlocked.Read(ref committed) > 200, TimeSpan.FromSeconds(30));

        var result = TdeDatabases.Backup(_dir.File("source.db"), _dir.File("backup.db"));
        var atBackup = Interlocked.Read(ref committed);
        SpinWait.SpinUntil(() => Interlocked.Read(ref committed) > atBackup + 50, TimeSpan.FromSeconds(30));
        stop.Cancel();
        await writer;

        Assert.True(result.Intact, result.Message);
        Assert.Equal(_dir.File("backup.db"), result.Path);
        Assert.Empty(Directory.GetFiles(_dir.Path, ".backup.db.*"));   // no temp file left behind
        using var copy = _dir.OpenTde("backup.db");
        var rows = copy.Scalar<long>("SELECT count(*) FROM t");
        // A snapshot: some prefix of the writer's commits, with no gap.
        Assert.InRange(rows, 200, atBackup);
        Assert.Equal(rows, copy.Scalar<long>("SELECT max(id) FROM t"));
        Assert.Equal(PageCipherSuite.Aegis256, TdeDatabases.Status(_dir.File("backup.db")).Cipher);
        Assert.True(source.Scalar<long>("SELECT count(*) FROM t") > rows);   // the writer carried on meanwhile
        Assert.Throws<IOException>(() => TdeDatabases.Backup(_dir.File("source.db"), _dir.File("backup.db")));
        var missing = Assert.Throws<IOException>(() => TdeDatabases.Backup(_dir.File("source.db"), Path.Combine(_dir.Path, "nowhere", "backup.db")));
        Assert.Contains("does not exist", missing.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TdeDatabases_Backup_takes_any_path_and_leaves_nothing_beside_an_idle_WAL_source()
    {
        var folder = Path.Combine(_dir.Path, "semi;colon 'quoted' #1 %20?");
        Directory.CreateDirectory(folder);
        var sourcePath = Path.Combine(folder, "a;b.db");
        using (var source = new SqliteConnection(TdeSqlite.ConnectionString(sourcePath)))
        {
            source.Open();
            source.Exec("PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES ('from a path with ; and quotes');");
        }

        var copyPath = Path.Combine(folder, "copy \"1\".db");
        Assert.True(TdeDatabases.Backup(sourcePath, copyPath).Intact);

        using (var copy = new SqliteConnection(TdeSqlite.ConnectionString(copyPath)))
        {
            copy.Open();
            Assert.Equal("from a path with ; and quotes", copy.Scalar<string>("SELECT x FROM t"));
        }

        Assert.Equal(["a;b.db", "copy \"1\".db"], Directory.GetFiles(folder).Select(Path.GetFileName).Order(StringComparer.Ordinal));
    }

    // The copy is sealed like its source (plain SQLite refuses it, no name of the data set in clear),
    // under a DEK of its own wrapped by the same KMS key.
    private static void AssertSealedCopy(string sourcePath, string copyPath)
    {
        var text = Encoding.UTF8.GetString(File.ReadAllBytes(copyPath));
        foreach (var name in Chinook.SampleNames)
        {
            Assert.False(text.Contains(name, StringComparison.Ordinal), $"the copy holds '{name}' in clear");
        }

        using (var plain = new SqliteConnection($"Data Source={copyPath};Mode=ReadOnly;Pooling=False"))
        {
            var e = Assert.Throws<SqliteException>(() =>
            {
                plain.Open();
                plain.Scalar<long>("SELECT count(*) FROM sqlite_master");
            });
            Assert.Equal(26, e.SqliteErrorCode);   // SQLITE_NOTADB
        }

        var source = TestEnvelopes.Read(sourcePath);
        var copy = TestEnvelopes.Read(copyPath);
        Assert.NotEqual(source.DatabaseIdHex, copy.DatabaseIdHex);
        Assert.NotEqual(source.ActiveDek.WrappedDek, copy.ActiveDek.WrappedDek);
        Assert.Equal(source.KmsKeyArn, copy.KmsKeyArn);
        Assert.False(copy.Empty);
        Assert.True(TdeDatabases.Status(copyPath).PageCount > 100);
    }
}
