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
    public void A_plaintext_database_holding_the_envelope_magic_at_the_second_slot_offset_is_still_encrypted()
    {
        // Offset 2048 lies inside page 1 of a 4096-byte-page database: here, in the text of a schema entry.
        using (var plain = _dir.OpenPlain("magic.db"))
        {
            plain.Exec($"PRAGMA page_size=4096; CREATE TABLE t(x TEXT DEFAULT '{new string('A', 3000)}'); INSERT INTO t DEFAULT VALUES;");
        }

        var bytes = File.ReadAllBytes(_dir.File("magic.db"));
        Assert.Equal((byte)'A', bytes[2048 - 1]);
        Assert.Equal((byte)'A', bytes[2048 + 8]);
        "TDESQLv1"u8.CopyTo(bytes.AsSpan(2048));
        File.WriteAllBytes(_dir.File("magic.db"), bytes);
        using (var plain = _dir.OpenPlain("magic.db"))
        {
            Assert.Equal("ok", plain.Scalar<string>("PRAGMA integrity_check"));
        }

        // It starts with "SQLite format 3": a plaintext database, whatever its page 1 holds.
        TdeDatabases.Encrypt(_dir.File("magic.db"), _dir.File("magic-sealed.db"));

        using var tde = _dir.OpenTde("magic-sealed.db");
        Assert.Equal(1L, tde.Scalar<long>("SELECT count(*) FROM t"));
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
        using (var plain = _dir.OpenPlain("bad.db"))
        {
            // A row that breaks its table's CHECK constraint (written with the checks off): the copy refuses it.
            plain.Exec("PRAGMA ignore_check_constraints=ON; CREATE TABLE t(x CHECK (x > 0)); INSERT INTO t VALUES (-1);");
        }

        var before = File.ReadAllBytes(_dir.File("bad.db"));
        var e = Assert.Throws<Microsoft.Data.Sqlite.SqliteException>(() => TdeDatabases.Encrypt(_dir.File("bad.db")));

        Assert.Equal(19, e.SqliteErrorCode);   // SQLITE_CONSTRAINT
        Assert.Equal(before, File.ReadAllBytes(_dir.File("bad.db")));
        Assert.Equal(["bad.db"], Directory.GetFiles(_dir.Path).Select(Path.GetFileName));
    }

    [Fact]
    public void A_virtual_table_whose_module_is_missing_is_refused_by_name()
    {
        using (var plain = _dir.OpenPlain("vt.db"))
        {
            plain.Exec("CREATE TABLE t(x); INSERT INTO t VALUES ('keep me'); PRAGMA writable_schema=ON;" +
                       "INSERT INTO sqlite_schema VALUES ('table', 'v', 'v', 0, 'CREATE VIRTUAL TABLE v USING nosuchmodule(a)');");
        }

        var before = File.ReadAllBytes(_dir.File("vt.db"));
        var e = Assert.Throws<TdeStorageException>(() => TdeDatabases.Encrypt(_dir.File("vt.db")));

        Assert.Equal(TdeStorageException.Codes.UnsupportedOperation, e.Code);
        Assert.Contains("'v'", e.Message, StringComparison.Ordinal);
        Assert.Contains("nosuchmodule", e.Message, StringComparison.Ordinal);
        Assert.Equal(before, File.ReadAllBytes(_dir.File("vt.db")));
        Assert.Equal(["vt.db"], Directory.GetFiles(_dir.Path).Select(Path.GetFileName));
    }

    [Theory]
    [InlineData("DELETE")]
    [InlineData("WAL")]
    public void Full_text_search_and_R_tree_indexes_and_rowids_survive_encryption_and_decryption(string journalMode)
    {
        const string Search = "SELECT rowid, title FROM docs WHERE docs MATCH 'secret NOT draft' ORDER BY rowid";
        const string ExternalSearch = "SELECT rowid FROM notes_fts WHERE notes_fts MATCH 'payload*' ORDER BY rowid";
        const string Near = "SELECT id FROM places WHERE minX >= 10 AND maxX <= 20 ORDER BY id";
        const string Rowids = "SELECT rowid, body FROM notes ORDER BY rowid";
        using (var plain = _dir.OpenPlain("fts.db"))
        {
            plain.Exec($"PRAGMA journal_mode={journalMode};" +
                       "CREATE VIRTUAL TABLE docs USING fts5(title, body);" +
                       "CREATE TABLE notes(body TEXT);" +   // rowid table without INTEGER PRIMARY KEY: its rowids have gaps below
                       "CREATE VIRTUAL TABLE notes_fts USING fts5(body, content='notes', content_rowid='rowid');" +
                       "CREATE TRIGGER notes_ai AFTER INSERT ON notes BEGIN INSERT INTO notes_fts(rowid, body) VALUES (new.rowid, new.body); END;" +
                       "CREATE VIRTUAL TABLE places USING rtree(id, minX, maxX);" +
                       "CREATE VIRTUAL TABLE legacy USING fts4(content);");
            using var tx = plain.BeginTransaction();
            for (var i = 0; i < 500; i++)
            {
                plain.Exec($"INSERT INTO docs(title, body) VALUES ('doc {i}', '{(i % 3 == 0 ? "secret" : "public")} text {(i % 5 == 0 ? "draft" : "final")} {i}');" +
                           $"INSERT INTO notes(body) VALUES ('payload{i} note');" +
                           $"INSERT INTO places VALUES ({i}, {i % 40}, {(i % 40) + 5});" +
                           $"INSERT INTO legacy(content) VALUES ('word{i} shared');");
            }

            plain.Exec("DELETE FROM notes WHERE rowid % 7 = 0;");   // gaps that a copy must not close
            tx.Commit();
        }

        List<string> Rows(Microsoft.Data.Sqlite.SqliteConnection db, string sql) => Chinook.Rows(db, sql);
        List<string> expectedSearch, expectedExternal, expectedNear, expectedRowids, expectedLegacy;
        using (var plain = _dir.OpenPlain("fts.db"))
        {
            expectedSearch = Rows(plain, Search);
            expectedExternal = Rows(plain, ExternalSearch);
            expectedNear = Rows(plain, Near);
            expectedRowids = Rows(plain, Rowids);
            expectedLegacy = Rows(plain, "SELECT docid FROM legacy WHERE legacy MATCH 'word42'");
        }

        Assert.NotEmpty(expectedSearch);
        Assert.NotEmpty(expectedNear);

        TdeDatabases.Encrypt(_dir.File("fts.db"));

        using (var tde = _dir.OpenTde("fts.db"))
        {
            Assert.Equal(expectedSearch, Rows(tde, Search));
            Assert.Equal(expectedExternal, Rows(tde, ExternalSearch));
            Assert.Equal(expectedNear, Rows(tde, Near));
            Assert.Equal(expectedRowids, Rows(tde, Rowids));
            Assert.Equal(expectedLegacy, Rows(tde, "SELECT docid FROM legacy WHERE legacy MATCH 'word42'"));
            tde.Exec("INSERT INTO docs(docs) VALUES ('integrity-check'); INSERT INTO notes_fts(notes_fts) VALUES ('integrity-check');");
            Assert.Equal("ok", tde.Scalar<string>("PRAGMA integrity_check"));

            // The indexes keep working: new rows are found (the trigger came along too).
            tde.Exec("INSERT INTO notes(body) VALUES ('payloadnew'); INSERT INTO docs(title, body) VALUES ('late', 'secret final');");
            Assert.Contains(tde.Scalar<long>("SELECT max(rowid) FROM notes").ToString(System.Globalization.CultureInfo.InvariantCulture), string.Join(",", Rows(tde, ExternalSearch)), StringComparison.Ordinal);
            Assert.Equal(expectedSearch.Count + 1, Rows(tde, Search).Count);
        }

        TdeDatabases.Decrypt(_dir.File("fts.db"), _dir.File("fts-plain.db"));
        using var back = _dir.OpenPlain("fts-plain.db");
        Assert.Equal(expectedNear, Rows(back, Near));
        Assert.Equal(expectedRowids.Count + 1, Rows(back, Rowids).Count);
        back.Exec("INSERT INTO docs(docs) VALUES ('integrity-check')");
        Assert.Equal("ok", back.Scalar<string>("PRAGMA integrity_check"));
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
