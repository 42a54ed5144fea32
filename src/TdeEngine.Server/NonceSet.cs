using System.Runtime.InteropServices;

namespace TdeEngine.Server;

/// <summary>
/// The replay guard's memory: a set of 64-bit nonce fingerprints, each with the second after which
/// it may be forgotten, in open-addressing tables of 12-byte slots (no object per nonce). Sharded by
/// the fingerprint's top bits, each shard under its own lock.
/// </summary>
/// <remarks>
/// <para>
/// A slot whose time has passed is dead: a lookup probes past it (a live copy of the same
/// fingerprint may sit further on), an insert reuses the first one it passed. <see cref="Sweep"/>
/// rebuilds a shard whose slots are mostly dead, and a shard grows (rebuilt at twice the size)
/// when three quarters of its slots are taken, so tables stay between about a quarter and three
/// quarters full: 16 to 48 bytes a nonce.
/// </para>
/// <para>
/// Fingerprint 0 marks an empty slot; a fingerprint that hashes to 0 is stored as 1.
/// </para>
/// </remarks>
internal sealed class NonceSet
{
    private const int ShardBits = 4;
    private const int InitialSlots = 1024;

    private readonly Shard[] _shards = Enumerable.Range(0, 1 << ShardBits).Select(_ => new Shard()).ToArray();

    /// <summary>Fingerprints held, live or not yet swept.</summary>
    public long Count => _shards.Sum(s => s.Occupied);

    /// <summary>Slots allocated in all shards (12 bytes each).</summary>
    public long Capacity => _shards.Sum(s => (long)s.Slots.Length);

    /// <summary>
    /// Adds <paramref name="fingerprint"/>, to be kept until <paramref name="forgetAfter"/> (Unix
    /// seconds). False when it is held and still live at <paramref name="now"/>: a replay.
    /// </summary>
    public bool TryAdd(ulong fingerprint, uint forgetAfter, uint now)
    {
        fingerprint = fingerprint == 0 ? 1 : fingerprint;
        var shard = _shards[fingerprint >> (64 - ShardBits)];
        lock (shard)
        {
            return shard.TryAdd(fingerprint, forgetAfter, now);
        }
    }

    /// <summary>Rebuilds every shard whose slots are mostly dead at <paramref name="now"/>, so that memory follows the live nonces.</summary>
    public void Sweep(uint now)
    {
        foreach (var shard in _shards)
        {
            lock (shard)
            {
                shard.SweepIfMostlyDead(now);
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

        public bool TryAdd(ulong fingerprint, uint forgetAfter, uint now)
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
                    if (++Occupied * 4 > Slots.Length * 3L)
                    {
                        Rebuild(now);
                    }

                    return true;
                }

                var live = slot.ForgetAfter >= now;
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

        public void SweepIfMostlyDead(uint now)
        {
            long live = 0;
            foreach (ref readonly var slot in Slots.AsSpan())
            {
                if (slot.Fingerprint != 0 && slot.ForgetAfter >= now)
                {
                    live++;
                }
            }

            if (live * 2 < Occupied)
            {
                Rebuild(now);
            }
        }

        // A new table for the live fingerprints, at most half full, with the dead ones left out
        // (twice the size when three quarters of the slots were live).
        private void Rebuild(uint now)
        {
            long live = 0;
            foreach (ref readonly var slot in Slots.AsSpan())
            {
                if (slot.Fingerprint != 0 && slot.ForgetAfter >= now)
                {
                    live++;
                }
            }

            var size = InitialSlots;
            while (size < live * 2)
            {
                size *= 2;
            }

            var old = Slots;
            Slots = new Slot[size];
            Occupied = 0;
            var mask = size - 1;
            foreach (ref readonly var slot in old.AsSpan())
            {
                if (slot.Fingerprint == 0 || slot.ForgetAfter < now)
                {
                    continue;
                }

                var i = (int)slot.Fingerprint & mask;
                while (Slots[i].Fingerprint != 0)
                {
                    i = (i + 1) & mask;
                }

                Slots[i] = slot;
                Occupied++;
            }
        }
    }
}
