namespace TdeEngine.Sqlite.Tests;

/// <summary>
/// Every TDE connection waits for locks inside SQLite (<c>PRAGMA busy_timeout</c>, from
/// <c>TdeStorageOptions.BusyTimeout</c>) instead of Microsoft.Data.Sqlite's 150 ms retry sleeps; plain
/// connections are left alone, and the app's own PRAGMA wins. (What it buys during an online rekey
/// is measured, not asserted here: docs/benchmarks.md, "rekey under load".)
/// </summary>
public sealed class BusyTimeoutTests : IDisposable
{
    private readonly DatabaseFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void A_TDE_connection_gets_the_default_busy_timeout_and_a_plain_one_does_not()
    {
        using var tde = _dir.OpenTde("b.db");
        using var plain = _dir.OpenPlain("plain.db");

        Assert.Equal(5000L, tde.Scalar<long>("PRAGMA busy_timeout"));
        Assert.Equal(0L, plain.Scalar<long>("PRAGMA busy_timeout"));

        tde.Exec("PRAGMA busy_timeout = 250");
        Assert.Equal(250L, tde.Scalar<long>("PRAGMA busy_timeout"));
    }

    [Fact]
    public void The_option_sets_it_and_zero_leaves_SQLite_default()
    {
        try
        {
            TdeSqlite.Register(TdeTestEnvironment.Kms, new Storage.TdeStorageOptions { TimeProvider = TdeTestEnvironment.Clock, BusyTimeout = TimeSpan.FromSeconds(12) });
            using (var twelve = _dir.OpenTde("o.db"))
            {
                Assert.Equal(12000L, twelve.Scalar<long>("PRAGMA busy_timeout"));
            }

            TdeSqlite.Register(TdeTestEnvironment.Kms, new Storage.TdeStorageOptions { TimeProvider = TdeTestEnvironment.Clock, BusyTimeout = TimeSpan.Zero });
            using var none = _dir.OpenTde("o.db");
            Assert.Equal(0L, none.Scalar<long>("PRAGMA busy_timeout"));
        }
        finally
        {
            TdeTestEnvironment.EnsureRegistered();
        }
    }

    [Fact]
    public void A_negative_busy_timeout_is_refused_by_Validate()
    {
        var options = new Storage.TdeStorageOptions { BusyTimeout = TimeSpan.FromMilliseconds(-1) };

        Assert.Throws<ArgumentOutOfRangeException>(options.Validate);
    }
}
