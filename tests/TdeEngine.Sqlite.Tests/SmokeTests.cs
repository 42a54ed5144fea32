namespace TdeEngine.Sqlite.Tests;

public sealed class SmokeTests : IDisposable
{
    private readonly DatabaseFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData("DELETE")]
    [InlineData("WAL")]
    public void Rows_written_through_the_VFS_come_back_after_reopening(string journalMode)
    {
        using (var db = _dir.OpenTde("a.db"))
        {
            Assert.Equal(journalMode.ToLowerInvariant(), db.Scalar<string>($"PRAGMA journal_mode={journalMode}"));
            db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT)");
            using var tx = db.BeginTransaction();
            for (var i = 0; i < 2000; i++)
            {
                db.Exec($"INSERT INTO t(name) VALUES ('secret-name-{i}')");
            }

            tx.Commit();
        }

        using (var db = _dir.OpenTde("a.db"))
        {
            Assert.Equal(2000, db.Scalar<long>("SELECT count(*) FROM t"));
            Assert.Equal("secret-name-1234", db.Scalar<string>("SELECT name FROM t WHERE id = 1235"));
            Assert.Equal("ok", db.Scalar<string>("PRAGMA integrity_check"));
        }

        foreach (var file in Directory.GetFiles(_dir.Path))
        {
            Assert.DoesNotContain("secret-name", System.Text.Encoding.ASCII.GetString(File.ReadAllBytes(file)), StringComparison.Ordinal);
        }
    }
}
