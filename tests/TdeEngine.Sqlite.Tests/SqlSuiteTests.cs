using Microsoft.Data.Sqlite;

namespace TdeEngine.Sqlite.Tests;

/// <summary>
/// One SQL suite, run on a plain connection and on a TDE connection, in both journal modes: the
/// results must be identical, query by query, before and after writes, savepoints and VACUUM.
/// </summary>
public sealed class SqlSuiteTests : IDisposable
{
    private readonly DatabaseFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData("DELETE")]
    [InlineData("WAL")]
    public void Chinook_gives_identical_results_on_plain_and_TDE_connections(string journalMode)
    {
        using var plain = _dir.OpenPlain("plain.db");
        using var tde = _dir.OpenTde("tde.db");
        foreach (var db in new[] { plain, tde })
        {
            db.Exec($"PRAGMA journal_mode={journalMode}");
            Chinook.Load(db);
        }

        Assert.Equal(275, tde.Scalar<long>("SELECT count(*) FROM Artist"));
        Assert.Equal(3503, tde.Scalar<long>("SELECT count(*) FROM Track"));
        AssertSameResults(plain, tde, "after load");

        foreach (var db in new[] { plain, tde })
        {
            using var tx = db.BeginTransaction();
            foreach (var sql in Chinook.Writes)
            {
                db.Exec(sql);
            }

            tx.Commit();

            // A savepoint that is rolled back must leave no trace (statement journal, sub-journal).
            db.Exec("SAVEPOINT s1; DELETE FROM PlaylistTrack WHERE TrackId > 100; UPDATE Artist SET Name = 'x'; ROLLBACK TO s1; RELEASE s1;");
            db.Exec("BEGIN; DELETE FROM InvoiceLine; ROLLBACK;");
        }

        AssertSameResults(plain, tde, "after writes and rollbacks");
        Assert.Equal(325, tde.Scalar<long>("SELECT count(*) FROM Artist"));
        Assert.Equal(2240, tde.Scalar<long>("SELECT count(*) FROM InvoiceLine"));

        foreach (var db in new[] { plain, tde })
        {
            db.Exec("DELETE FROM Blobs WHERE Id % 2 = 0; VACUUM;");
        }

        AssertSameResults(plain, tde, "after VACUUM");
        Assert.Equal("ok", tde.Scalar<string>("PRAGMA integrity_check"));
        Assert.Equal(0L, tde.Scalar<long>("PRAGMA foreign_key_check") );
    }

    [Theory]
    [InlineData("DELETE")]
    [InlineData("WAL")]
    public void A_reopened_TDE_database_answers_like_the_plain_one(string journalMode)
    {
        using (var tde = _dir.OpenTde("tde.db"))
        {
            tde.Exec($"PRAGMA journal_mode={journalMode}");
            Chinook.Load(tde);
        }

        using var plain = _dir.OpenPlain("plain.db");
        Chinook.Load(plain);
        using var reopened = _dir.OpenTde("tde.db");

        AssertSameResults(plain, reopened, "after reopening");
    }

    private static void AssertSameResults(SqliteConnection plain, SqliteConnection tde, string stage)
    {
        foreach (var sql in Chinook.Queries)
        {
            var expected = Chinook.Rows(plain, sql);
            var actual = Chinook.Rows(tde, sql);
            Assert.True(expected.Count > 0, $"{stage}: the plain database returned no rows for: {sql}");
            Assert.True(expected.SequenceEqual(actual), $"{stage}: results differ for: {sql}");
        }
    }
}
