using System.Runtime.InteropServices;

namespace TdeEngine.Server;

/// <summary>
/// The replay guard's memory: a set of 64-bit nonce fingerprints, each with the minute after which
/// it may be forgotten, in open-addressing tables of 12-byte slots (no object per nonce). Sharded by
/// the fingerprint's top bits, each shard under its own lock.
/// </summary>
/// <remarks>
/// <para>
/// A fingerprint is forgotten only by <see cref="Sweep"/>: it moves a watermark forward (never
/// back) to the minute it is given, and every slot whose minute is before the watermark is dead
/// from then on. A lookup probes past a dead slot (a live copy of the same fingerprint may sit
/// further on), an insert reuses the first one it passed. Because only the watermark decides,
/// a server clock that steps back does not bring forgotten nonces' requests back to life any more
/// than the sweeps already did: a nonce is forgotten only once a sweep has seen its minute pass.
/// </para>
/// <para>
/// A shard grows (rebuilt at twice the size) when three quarters of its slots are taken, and a
/// sweep rebuilds a shard whose slots are mostly dead or whose table has more than four slots per
/// live fingerprint: right after a sweep a live nonce takes 16 to 48 bytes (beyond the smallest
/// tables, 1,024 slots a shard).
/// Minutes since 1970 in 32 bits last until the year 10136.
/// </para>
/// <para>
/// Fingerprint 0 marks an empty slot; a fingerprint that hashes to 0 is stored as 1.
/// </para>
/// </remarks>
internal sealed class NonceSet
{
    private const int ShardBits = 4;
    private const int InitialSlots = 1024;

    // The most slots a shard's table may have (12 GiB): more than anything can fill.
    private const long MaxSlots = 1L << 30;

    private readonly Shard[] _shards = Enumerable.Range(0, 1 << ShardBits).Select(_ => new Shard()).ToArray();

    // Slots whose minute is before this one are dead. Only Sweep moves it, and only forward.
    private uint _deadBefore;

    /// <summary>Fingerprints held, live or not yet swept.</summary>
    public long Count => _shards.Sum(s => Volatile.Read(ref s.Occupied));

    /// <summary>Fingerprints not yet forgotten by a sweep (a scan of every slot: for tests and measurements).</summary>
    public long LiveCount
    {
        get
        {
            var deadBefore = Volatile.Read(ref _deadBefore);
            long live = 0;
            foreach (var shard in _shards)
            {
                lock (shard)
                {
                    live += shard.Live(deadBefore);
                }
            }

            return live;
        }
    }

    /// <summary>Slots allocated in all shards (12 bytes each).</summary>
    public long Capacity => _shards.Sum(s => (long)s.Slots.Length);

    /// <summary>
    /// Adds <paramref name="fingerprint"/>, to be kept at least until the end of minute
    /// <paramref name="forgetAfter"/> (minutes since 1970). False when it is held and not yet
    /// forgotten by a sweep: a replay.
    /// </summary>
    public bool TryAdd(ulong fingerprint, uint forgetAfter)
    {
        fingerprint = fingerprint == 0 ? 1 : fingerprint;
        var shard = _shards[fingerprint >> (64 - ShardBits)];
        lock (shard)
        {
            return shard.TryAdd(fingerprint, forgetAfter, Volatile.Read(ref _deadBefore));
        }
    }

    /// <summary>
    /// Forgets the fingerprints whose minute is before <paramref name="now"/> (minutes since 1970;
    /// an earlier minute than a previous sweep's changes nothing), and rebuilds the shards that are
    /// mostly dead or much larger than they need to be.
    /// </summary>
    public void Sweep(uint now)
    {
        var deadBefore = Math.Max(now, Volatile.Read(ref _deadBefore));
        Volatile.Write(ref _deadBefore, deadBefore);
        foreach (var shard in _shards)
        {
            lock (shard)
            {
                shard.SweepIfWasteful(deadBefore);
            }
        }
    }

    [StructLayout(LayoutKind.Sequential, Pack = 4)]
    private struct Slot
    {
        public ulong Fingerprint;
        public uint ForgetAfter;
    }

    private sealed class Shard
    {
        public Slot[] Slots = new Slot[InitialSlots];

        // Slots that hold a fingerprint, live or dead.
        public long Occupied;

        public bool TryAdd(ulong fingerprint, uint forgetAfter, uint deadBefore)
        {
            var mask = Slots.Length - 1;
            var reusable = -1;
            for (var i = (int)fingerprint & mask; ; i = (i + 1) & mask)
            {
                ref var slot = ref Slots[i];
                if (slot.Fingerprint == 0)
                {
                    if (reusable >= 0)
                    {
                        Slots[reusable] = new Slot { Fingerprint = fingerprint, ForgetAfter = forgetAfter };
                        return true;
                    }

                    slot = new Slot { Fingerprint = fingerprint, ForgetAfter = forgetAfter };
                    Volatile.Write(ref Occupied, Occupied + 1);
                    if (Occupied * 4 > Slots.Length * 3L)
                    {
                        Rebuild(deadBefore);
                    }

                    return true;
                }

                var live = slot.ForgetAfter >= deadBefore;
                if (slot.Fingerprint == fingerprint)
                {
                    if (live)
                    {
                        return false;
                    }

                    slot.ForgetAfter = forgetAfter;   // the same fingerprint, forgotten: it is new again
                    return true;
                }

                if (!live && reusable < 0)
                {
                    reusable = i;
                }
            }
        }

        public void SweepIfWasteful(uint deadBefore)
        {
            var live = Live(deadBefore);
            if (live * 2 < Occupied || (Slots.Length > InitialSlots && live * 4 < Slots.Length))
            {
                Rebuild(deadBefore);
            }
        }

        public long Live(uint deadBefore)
        {
            long live = 0;
            foreach (ref readonly var slot in Slots.AsSpan())
            {
                if (slot.Fingerprint != 0 && slot.ForgetAfter >= deadBefore)
                {
                    live++;
                }
            }

            return live;
        }

        // A new table for the live fingerprints, at most half full (so twice the size when three
        // quarters of the slots were live), with the dead ones left out.
        private void Rebuild(uint deadBefore)
        {
            var live = Live(deadBefore);
            long size = InitialSlots;
            while (size < live * 2 && size < MaxSlots)
            {
                size *= 2;
            }

            if (live * 4 > size * 3)
            {
                throw new InvalidOperationException("The replay guard holds more nonces than it can keep.");
            }

            var old = Slots;
            var slots = new Slot[size];
            var mask = (int)(size - 1);
            long occupied = 0;
            foreach (ref readonly var slot in old.AsSpan())
            {
                if (slot.Fingerprint == 0 || slot.ForgetAfter < deadBefore)
                {
                    continue;
                }

                var i = (int)slot.Fingerprint & mask;
                while (slots[i].Fingerprint != 0)
                {
                    i = (i + 1) & mask;
                }

                slots[i] = slot;
                occupied++;
            }

            Slots = slots;
            Volatile.Write(ref Occupied, occupied);
        }
    }
}
