using System.Globalization;

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
        uint deadBefore = 0;
        // Few distinct values, so that fingerprints come back (live and dead), and some that share
        // their low bits (the same probe chain) or their top bits (the same shard).
        var pool = Enumerable.Range(0, 60_000).Select(i => i % 7 == 0 ? (ulong)i << 40 : i % 5 == 0 ? (ulong)i : (ulong)random.NextInt64()).ToArray();
        for (var step = 0; step < 400_000; step++)
        {
            var fingerprint = pool[random.Next(pool.Length)];
            var forgetAfter = now + (uint)random.Next(0, 30);
            var expected = !(model.TryGetValue(fingerprint, out var held) && held >= deadBefore);
            if (expected)
            {
                model[fingerprint] = forgetAfter;
            }

            Assert.True(expected == set.TryAdd(fingerprint, forgetAfter), $"step {step}: fingerprint {fingerprint:x}");
            if (step % 1000 == 0)
            {
                now += (uint)random.Next(0, 3);
            }

            if (step % 20_000 == 0)
            {
                // Sometimes with a clock that went back: it forgets nothing more than before.
                var sweep = step % 60_000 == 0 ? now - 10 : now;
                set.Sweep(sweep);
                deadBefore = Math.Max(deadBefore, sweep);
            }
        }

        Assert.Equal(model.Count(p => p.Value >= deadBefore), set.LiveCount);
        Assert.True(set.Count >= set.LiveCount);
    }

    [Fact]
    public void Fingerprint_zero_is_kept_like_any_other()
    {
        var set = new NonceSet();
        Assert.True(set.TryAdd(0, 100));
        Assert.False(set.TryAdd(0, 100));
        set.Sweep(101);
        Assert.True(set.TryAdd(0, 200));   // forgotten after its minute
    }

    [Fact]
    public void Memory_follows_the_live_nonces()
    {
        var set = new NonceSet();
        for (ulong i = 1; i <= 1_000_000; i++)
        {
            Assert.True(set.TryAdd(i * 0x9E3779B97F4A7C15UL, 100));
        }

        Assert.InRange(set.Capacity, 1_000_000 * 4 / 3, 1_000_000 * 4);   // at most three quarters full, at least a quarter

        // All of them expire; a few new ones arrive; the sweep gives the memory back.
        for (ulong i = 1; i <= 1000; i++)
        {
            Assert.True(set.TryAdd(i * 0x2545F4914F6CDD1DUL, 300));
        }

        set.Sweep(200);
        Assert.Equal(1000, set.Count);
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
                if (set.TryAdd(i * 0x9E3779B97F4A7C15UL, 100))
                {
                    Interlocked.Increment(ref added);
                }
            }
        });

        Assert.Equal(200_000, added);
        Assert.Equal(200_000, set.Count);
    }
}

/// <summary>The guard over a clock that steps back, and past the year 2106.</summary>
public sealed class ReplayGuardClockTests
{
    private sealed class SettableClock(DateTimeOffset now) : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = now;

        public override DateTimeOffset GetUtcNow() => Now;
    }

    private static string Stamp(DateTimeOffset at) => at.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);

    [Fact]
    public void A_clock_that_steps_back_does_not_reopen_a_nonce_that_no_sweep_forgot()
    {
        var t0 = new DateTimeOffset(2026, 11, 29, 12, 0, 0, TimeSpan.Zero);
        var clock = new SettableClock(t0);
        var guard = new ReplayGuard(clock);
        Assert.Null(guard.Check("LTAIa", Stamp(t0), "victim"));
        clock.Now = t0 + TimeSpan.FromSeconds((15 * 60) + 30);   // a sweep runs; the victim is still live
        Assert.Null(guard.Check("LTAIa", Stamp(clock.Now), "tick"));

        // Past the victim's time, before the next sweep: heavy traffic makes every shard grow and
        // probe past the victim's slot.
        clock.Now = t0 + TimeSpan.FromSeconds((16 * 60) + 10);
        for (var i = 0; i < 20_000; i++)
        {
            Assert.Null(guard.Check("LTAIa", Stamp(clock.Now), "load-" + i));
        }

        clock.Now = t0 + TimeSpan.FromMinutes(10);   // the clock steps back: the victim's timestamp is valid again
        Assert.Equal("SignatureNonceUsed", guard.Check("LTAIa", Stamp(t0), "victim")?.Code);
    }

    [Fact]
    public void Nonces_are_forgotten_after_the_year_2106_too()
    {
        var t = new DateTimeOffset(2106, 3, 1, 0, 0, 0, TimeSpan.Zero);
        var clock = new SettableClock(t);
        var guard = new ReplayGuard(clock);
        for (var i = 0; i < 1000; i++)
        {
            Assert.Null(guard.Check("LTAIa", Stamp(t), "old-" + i));
        }

        clock.Now = t + TimeSpan.FromHours(2);   // all of them expired; a sweep is due
        Assert.Null(guard.Check("LTAIa", Stamp(clock.Now), "new"));
        Assert.Equal(1, guard.Count);
    }
}
