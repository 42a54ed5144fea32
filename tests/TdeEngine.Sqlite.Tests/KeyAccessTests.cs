using Microsoft.Data.Sqlite;
using TdeEngine.Kms.Errors;
using TdeEngine.Storage.Errors;

namespace TdeEngine.Sqlite.Tests;

/// <summary>KMS keys behind databases: revocation within the DEK cache TTL, and clear errors.</summary>
public sealed class KeyAccessTests : IDisposable
{
    private readonly DatabaseFolder _dir = new();

    public void Dispose()
    {
        TdeTestEnvironment.EnsureRegistered();
        _dir.Dispose();
    }

    private TdeStorageException OpenFails(string name, out SqliteException sqlite)
    {
        using var db = new SqliteConnection(TdeSqlite.ConnectionString(_dir.File(name)));
        var e = Assert.Throws<TdeStorageException>(() => TdeSqlite.Explain(() =>
        {
            db.Open();
            return db.Scalar<long>("SELECT count(*) FROM sqlite_schema");
        }));
        sqlite = Assert.IsType<SqliteException>(e.InnerException);
        return e;
    }

    [Fact]
    public void Disabling_the_KMS_key_stops_new_opens_after_the_TTL_and_enabling_it_restores_them()
    {
        var kms = TdeTestEnvironment.Kms;
        var key = kms.CreateKey(TdeTestEnvironment.Caller, new() { Description = "revocation test" }).KeyId;
        using (var db = _dir.OpenTde("r.db", $"kms_key={key}"))
        {
            db.Exec("CREATE TABLE t(x); INSERT INTO t VALUES (1);");
        }

        kms.DisableKey(TdeTestEnvironment.Caller, key);
        using (var cached = _dir.OpenTde("r.db"))
        {
            Assert.Equal(1L, cached.Scalar<long>("SELECT count(*) FROM t"));   // within the TTL: the cached DEK
        }

        TdeTestEnvironment.Clock.Advance(TdeTestEnvironment.Options.DekCacheTtl + TimeSpan.FromSeconds(1));
        var e = OpenFails("r.db", out var sqlite);

        Assert.Equal(TdeStorageException.Codes.KeyUnavailable, e.Code);
        Assert.Equal(23, sqlite.SqliteErrorCode);   // SQLITE_AUTH, not "file is not a database"
        Assert.Contains(KmsErrors.Codes.Disabled, e.Message, StringComparison.Ordinal);
        Assert.Equal(KmsErrors.Codes.Disabled, Assert.IsType<KmsException>(TdeSqlite.LastError!.InnerException).Code);

        kms.EnableKey(TdeTestEnvironment.Caller, key);
        using var again = _dir.OpenTde("r.db");
        Assert.Equal(1L, again.Scalar<long>("SELECT count(*) FROM t"));
    }

    [Fact]
    public void A_database_of_another_account_is_a_KMS_error_not_a_corrupt_file()
    {
        var kms = TdeTestEnvironment.Kms;
        var key = kms.CreateKey(TdeTestEnvironment.Caller, new()).KeyId;
        using (var db = _dir.OpenTde("mine.db", $"kms_key={key}"))
        {
            db.Exec("CREATE TABLE t(x)");
        }

        TdeSqlite.Register(new Storage.Keys.KmsDataKeyProvider(kms, () => Kms.Identity.KmsCallContext.ForRoot("9999888877776666")),
            new Storage.TdeStorageOptions { TimeProvider = TdeTestEnvironment.Clock });
        var e = OpenFails("mine.db", out var sqlite);

        Assert.Equal(TdeStorageException.Codes.KeyUnavailable, e.Code);
        Assert.Contains(KmsErrors.Codes.KeyNotFound, e.Message, StringComparison.Ordinal);
        Assert.Equal(23, sqlite.SqliteErrorCode);
    }

    [Fact]
    public void An_unreachable_KMS_is_reported_as_such()
    {
        using (var db = _dir.OpenTde("u.db"))
        {
            db.Exec("CREATE TABLE t(x)");
        }

        TdeSqlite.Register(new UnreachableKms(), new Storage.TdeStorageOptions { TimeProvider = TdeTestEnvironment.Clock, DekCacheTtl = TimeSpan.Zero });
        var e = OpenFails("u.db", out var sqlite);

        Assert.Equal(TdeStorageException.Codes.KmsUnreachable, e.Code);
        Assert.Contains("reachable", e.Message, StringComparison.Ordinal);
        Assert.Equal(14, sqlite.SqliteErrorCode);   // SQLITE_CANTOPEN
    }

    private sealed class UnreachableKms : Storage.Keys.IDataKeyProvider
    {
        public Storage.Keys.NewDataKey GenerateDataKey(string kmsKeyId, Kms.Envelope.EncryptionContext context) =>
            throw new HttpRequestException("Connection refused (127.0.0.1:9)");

        public Kms.Secrets.SecretBuffer Decrypt(byte[] wrapped, Kms.Envelope.EncryptionContext context) =>
            throw new HttpRequestException("Connection refused (127.0.0.1:9)");
    }

    [Fact]
    public void A_missing_KMS_key_at_creation_is_reported_and_leaves_no_file()
    {
        using var db = new SqliteConnection($"Data Source=file:{_dir.File("n.db")}?vfs=tde&kms_key=alias/does-not-exist;Pooling=False");
        var e = Assert.Throws<TdeStorageException>(() => TdeSqlite.Explain(() =>
        {
            db.Open();
            return 0;
        }));

        Assert.Equal(TdeStorageException.Codes.KeyUnavailable, e.Code);
        Assert.Contains(KmsErrors.Codes.AliasNotFound, e.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(_dir.File("n.db")) && new FileInfo(_dir.File("n.db")).Length > 0);
    }

    [Fact]
    public void A_plaintext_database_or_another_file_is_named_for_what_it_is()
    {
        using (var plain = _dir.OpenPlain("plain.db"))
        {
            plain.Exec("CREATE TABLE t(x)");
        }

        File.WriteAllText(_dir.File("notes.db"), "just some text that is long enough to be read as a header, padded out to be sure it is longer than a page header");

        var asPlain = OpenFails("plain.db", out var sqlite1);
        var asText = OpenFails("notes.db", out var sqlite2);

        Assert.Equal(TdeStorageException.Codes.PlaintextDatabase, asPlain.Code);
        Assert.Contains("tde db encrypt", asPlain.Message, StringComparison.Ordinal);
        Assert.Equal(TdeStorageException.Codes.NotTdeDatabase, asText.Code);
        Assert.Equal(26, sqlite1.SqliteErrorCode);
        Assert.Equal(26, sqlite2.SqliteErrorCode);
    }
}
