namespace TdeEngine.Server.Tests;

/// <summary>The replay guard's compact nonce store against a plain dictionary doing the same job.</summary>
public sealed class NonceSetTests
{
    [Fact]
    public void It_answers_like_a_dictionary_through_growth_reuse_and_sweeps()
    {
        var set = new NonceSet();
        var model = new Dictionary<ulong, uint>();
        var random = new Random(20261129);
        uint now = 1_000_000;
        // Few distinct values, so that fingerprints come back (live and dead), and some that share
        // their low bits (the same probe chain) or their top bits (the same shard).
        var pool = Enumerable.Range(0, 60_000).Select(i => i % 7 == 0 ? (ulong)i << 40 : i % 5 == 0 ? (ulong)i : (ulong)random.NextInt64()).ToArray();
        for (var step = 0; step < 400_000; step++)
        {
            var fingerprint = pool[random.Next(pool.Length)];
            var forgetAfter = now + (uint)random.Next(0, 120);
            var expected = !(model.TryGetValue(fingerprint, out var held) && held >= now);
            if (expected)
            {
                model[fingerprint] = forgetAfter;
            }

            Assert.True(expected == set.TryAdd(fingerprint, forgetAfter, now), $"step {step}: fingerprint {fingerprint:x}");
            if (step % 1000 == 0)
            {
                now += (uint)random.Next(0, 20);
            }

            if (step % 50_000 == 0)
            {
                set.Sweep(now);
            }
        }

        Assert.True(set.Count >= model.Count(p => p.Value >= now));
    }

    [Fact]
    public void Fingerprint_zero_is_kept_like_any_other()
    {
        var set = new NonceSet();
        Assert.True(set.TryAdd(0, 100, 10));
        Assert.False(set.TryAdd(0, 100, 10));
        Assert.True(set.TryAdd(0, 200, 101));   // forgotten after its time
    }

    [Fact]
    public void Memory_follows_the_live_nonces()
    {
        var set = new NonceSet();
        for (ulong i = 1; i <= 1_000_000; i++)
        {
            Assert.True(set.TryAdd(i * 0x9E3779B97F4A7C15UL, 100, 10));
        }

        var grown = set.Capacity;
        Assert.InRange(grown, 1_000_000 * 4 / 3, 1_000_000 * 4);   // at most three quarters full, at least a quarter

        // All of them expire; a few new ones arrive; the sweep gives the memory back.
        for (ulong i = 1; i <= 1000; i++)
        {
            Assert.True(set.TryAdd(i * 0x2545F4914F6CDD1DUL, 300, 200));
        }

        set.Sweep(200);
        Assert.InRange(set.Count, 1000, 1000);
        Assert.True(set.Capacity <= 16 * 1024, $"{set.Capacity} slots after the sweep");
    }

    [Fact]
    public void Concurrent_callers_add_each_fingerprint_once()
    {
        var set = new NonceSet();
        var added = 0;
        Parallel.For(0, 8, _ =>
        {
            for (ulong i = 1; i <= 200_000; i++)
            {
                if (set.TryAdd(i * 0x9E3779B97F4A7C15UL, 100, 10))
                {
                    Interlocked.Increment(ref added);
                }
            }
        });

        Assert.Equal(200_000, added);
        Assert.Equal(200_000, set.Count);
    }
}
