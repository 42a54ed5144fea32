using TdeEngine.Storage.Errors;
using TdeEngine.Storage.Pages;

namespace TdeEngine.Storage.Tests;

public class SealCounterTests
{
    [Fact]
    public void A_new_reservation_is_persisted_before_the_count_passes_the_old_one()
    {
        var persisted = new List<ulong>();
        var counter = new SealCounter("db", count: 10, reserved: 12, limit: ulong.MaxValue);

        counter.Take(persisted.Add);   // 11
        counter.Take(persisted.Add);   // 12
        Assert.Empty(persisted);
        counter.Take(persisted.Add);   // 13 > 12: reserve first

        Assert.Equal([13 + SealCounter.Block], persisted);
        Assert.Equal(13UL, counter.Count);
    }

    [Fact]
    public void Sealing_past_the_limit_is_refused_with_a_stable_code()
    {
        var counter = new SealCounter("orders.db", count: 0, reserved: ulong.MaxValue, limit: 2);
        counter.Take(null);
        counter.Take(null);

        var e = Assert.Throws<TdeStorageException>(() => counter.Take(null));

        Assert.Equal(TdeStorageException.Codes.NonceBudgetExhausted, e.Code);
        Assert.Contains("orders.db", e.Message, StringComparison.Ordinal);
        Assert.Contains("Rotate the DEK", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_reservation_read_from_disk_moves_the_count_forward_only()
    {
        var counter = new SealCounter("db", count: 100, reserved: 200, limit: ulong.MaxValue);

        counter.CatchUp(150);
        Assert.Equal(100UL, counter.Count);
        counter.CatchUp(5000);
        Assert.Equal(5000UL, counter.Count);
    }

    [Fact]
    public void The_AES_GCM_limit_keeps_a_margin_below_two_to_the_32()
    {
        Assert.Equal((1UL << 32) - (1UL << 28), PageCipherSuites.SealLimit(PageCipherSuite.Aes256Gcm));
        Assert.Equal(ulong.MaxValue, PageCipherSuites.SealLimit(PageCipherSuite.Aegis256));
    }
}
