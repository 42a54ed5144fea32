using TdeEngine.Storage.Errors;

namespace TdeEngine.Storage.Pages;

/// <summary>
/// Counts pages sealed under one DEK, so AES-GCM's random-nonce budget is never exceeded. The
/// envelope persists a reservation (a high-water mark) ahead of the count: on open the count
/// resumes from the reservation, and the reservation is moved forward (and written) before the
/// count can pass it. A crash can therefore only over-count.
/// </summary>
/// <remarks>Thread-safe; shared by every connection of the process to one database.</remarks>
internal sealed class SealCounter(string databaseName, ulong count, ulong reserved, ulong limit)
{
    /// <summary>
    /// How far ahead each reservation reaches: one envelope write per 4096 seals while writing, and
    /// at most 4096 seals of budget lost per process that writes (2^32 / 4096 = a million such processes).
    /// </summary>
    public const ulong Block = 1 << 12;

    private readonly Lock _lock = new();
    private ulong _count = count;
    private ulong _reserved = reserved;

    public ulong Count => Interlocked.Read(ref _count);

    public ulong Limit { get; } = limit;

    /// <summary>
    /// Counts one seal. When the count would pass the persisted reservation, <paramref name="persist"/>
    /// writes a new one first (under the counter's lock).
    /// </summary>
    public void Take(Action<ulong>? persist)
    {
        var n = Interlocked.Increment(ref _count);
        if (n > Limit)
        {
            throw new TdeStorageException(TdeStorageException.Codes.NonceBudgetExhausted,
                $"The DEK of '{databaseName}' has sealed {Limit:N0} pages, the safe limit for AES-GCM random nonces. Rotate the DEK (or re-encrypt with aegis-256) before writing more.");
        }

        if (n > Volatile.Read(ref _reserved))
        {
            lock (_lock)
            {
                if (n > _reserved)
                {
                    var next = n + Block;
                    if (persist is null)
                    {
                        throw new InvalidOperationException("Sealing past the reservation needs a database file to record the new reservation in.");
                    }

                    persist(next);
                    _reserved = next;
                }
            }
        }
    }

    /// <summary>Moves the count up to a reservation read from disk (another process may have sealed).</summary>
    public void CatchUp(ulong reserved)
    {
        lock (_lock)
        {
            if (reserved > _reserved)
            {
                _reserved = reserved;
                Interlocked.Exchange(ref _count, Math.Max(Interlocked.Read(ref _count), reserved));
            }
        }
    }
}
