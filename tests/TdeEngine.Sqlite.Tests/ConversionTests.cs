using System.Text;
using TdeEngine.Storage.Errors;
using TdeEngine.Storage.Pages;

namespace TdeEngine.Sqlite.Tests;

/// <summary>Turning encryption on and off for existing databases, and reading a file's status without keys.</summary>
public sealed class ConversionTests : IDisposable
{
    private readonly DatabaseFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    private void MakePlainChinook(string name, string journalMode = "DELETE")
    {
        using var plain = _dir.OpenPlain(name);
        plain.Exec($"PRAGMA journal_mode={journalMode}; PRAGMA user_version=42;");
        Chinook.Load(plain);
        plain.Exec("CREATE TABLE Seq (Id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT, g TEXT GENERATED ALWAYS AS (upper(v)) VIRTUAL);" +
                   "INSERT INTO Seq (v) VALUES ('a'), ('b'); DELETE FROM Seq WHERE v = 'b';" +
                   "CREATE VIEW ArtistNames AS SELECT Name FROM Artist;" +
                   "CREATE TRIGGER SeqAudit AFTER INSERT ON Seq BEGIN UPDATE Seq SET v = v || '!' WHERE Id = new.Id; END;");
    }

    [Theory]
    [InlineData("DELETE")]
    [InlineData("WAL")]
    public void Encrypting_in_place_keeps_every_row_and_leaves_no_plaintext(string journalMode)
    {
        MakePlainChinook("shop.db", journalMode);
        using var reference = _dir.OpenPlain("reference.db");
        Chinook.Load(reference);

        TdeDatabases.Encrypt(_dir.File("shop.db"));

        using var tde = _dir.OpenTde("shop.db");
        foreach (var sql in Chinook.Queries.Where(q => !q.Contains("sqlite_schema", StringComparison.Ordinal)))
        {
            Assert.Equal(Chinook.Rows(reference, sql), Chinook.Rows(tde, sql));
        }

        Assert.Equal(42L, tde.Scalar<long>("PRAGMA user_version"));
        Assert.Equal(2L, tde.Scalar<long>("SELECT seq FROM sqlite_sequence WHERE name = 'Seq'"));
        tde.Exec("INSERT INTO Seq (v) VALUES ('c')");
        Assert.Equal("C!", tde.Scalar<string>("SELECT g FROM Seq WHERE Id = 3"));   // AUTOINCREMENT, trigger and generated column survived
        Assert.Equal(275L, tde.Scalar<long>("SELECT count(*) FROM ArtistNames"));
        Assert.False(File.Exists(_dir.File("shop.db-wal")));
        var text = Encoding.UTF8.GetString(File.ReadAllBytes(_dir.File("shop.db")));
        Assert.DoesNotContain("Aerosmith", text, StringComparison.Ordinal);
        Assert.DoesNotContain("SQLite format 3", text, StringComparison.Ordinal);
    }

    [Fact]
    public void Encrypting_to_another_file_leaves_the_original_and_can_pick_key_and_cipher()
    {
        MakePlainChinook("plain.db");
        var key = TdeTestEnvironment.Kms.CreateKey(TdeTestEnvironment.Caller, new() { Description = "export" }).KeyId;

        TdeDatabases.Encrypt(_dir.File("plain.db"), _dir.File("sealed.db"), key, PageCipherSuite.Aegis256);

        var status = TdeDatabases.Status(_dir.File("sealed.db"));
        Assert.EndsWith(key, status.KmsKeyArn, StringComparison.Ordinal);
        Assert.Equal(PageCipherSuite.Aegis256, status.Cipher);
        Assert.Equal(68, status.ReservedBytes);
        using var plain = _dir.OpenPlain("plain.db");
        Assert.Equal(275L, plain.Scalar<long>("SELECT count(*) FROM Artist"));
        using var tde = _dir.OpenTde("sealed.db");
        Assert.Equal(275L, tde.Scalar<long>("SELECT count(*) FROM Artist"));
    }

    [Fact]
    public void Decrypting_exports_a_plaintext_database_plain_SQLite_opens()
    {
        using (var tde = _dir.OpenTde("sealed.db"))
        {
            Chinook.Load(tde);
            tde.Exec("PRAGMA user_version=7");
        }

        TdeDatabases.Decrypt(_dir.File("sealed.db"), _dir.File("export.db"));

        using var plain = _dir.OpenPlain("export.db", Microsoft.Data.Sqlite.SqliteOpenMode.ReadOnly);
        Assert.Equal(3503L, plain.Scalar<long>("SELECT count(*) FROM Track"));
        Assert.Equal(7L, plain.Scalar<long>("PRAGMA user_version"));
        Assert.Equal("ok", plain.Scalar<string>("PRAGMA integrity_check"));
        var shell = OnDiskTests.Run("sqlite3", _dir.File("export.db"), "SELECT Name FROM Artist WHERE ArtistId = 1;");
        Assert.Equal("AC/DC", shell.Stdout.Trim());
    }

    [Fact]
    public void A_failed_conversion_leaves_the_original_untouched()
    {
        using (var plain = _dir.OpenPlain("vt.db"))
        {
            plain.Exec("CREATE TABLE t(x); INSERT INTO t VALUES ('keep me'); CREATE VIRTUAL TABLE r USING rtree(id, a, b);");
        }

        var before = File.ReadAllBytes(_dir.File("vt.db"));
        var e = Assert.Throws<TdeStorageException>(() => TdeDatabases.Encrypt(_dir.File("vt.db")));

        Assert.Equal(TdeStorageException.Codes.UnsupportedOperation, e.Code);
        Assert.Equal(before, File.ReadAllBytes(_dir.File("vt.db")));
        Assert.Equal(["vt.db"], Directory.GetFiles(_dir.Path).Select(Path.GetFileName));
    }

    [Fact]
    public void Encrypting_something_that_is_not_SQLite_is_refused()
    {
        File.WriteAllText(_dir.File("notes.txt"), "hello");

        var e = Assert.Throws<TdeStorageException>(() => TdeDatabases.Encrypt(_dir.File("notes.txt")));

        Assert.Equal(TdeStorageException.Codes.NotTdeDatabase, e.Code);
    }

    [Fact]
    public void Status_reports_the_envelope_and_pages_per_DEK_version_without_a_key()
    {
        using (var tde = _dir.OpenTde("s.db"))
        {
            Chinook.Load(tde);
        }

        var status = TdeDatabases.Status(_dir.File("s.db"));

        Assert.Equal(PageCipherSuite.Aes256Gcm, status.Cipher);
        Assert.Equal(4096, status.PageSize);
        Assert.Equal(32, status.ReservedBytes);
        Assert.Equal((new FileInfo(_dir.File("s.db")).Length - 4096) / 4096, status.PageCount);
        Assert.Equal(1u, status.ActiveDekVersion);
        Assert.Equal(new Dictionary<uint, long> { [1] = status.PageCount }, status.PagesPerDekVersion);
        var dek = Assert.Single(status.Deks);
        Assert.True(dek.SealsReserved >= (ulong)status.PageCount);
        Assert.False(dek.NearLimit);
        Assert.Matches("^acs:kms:cn-hangzhou:[0-9]+:key/", status.KmsKeyArn);
    }
}
