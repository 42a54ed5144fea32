using System.Collections.Concurrent;
using System.Security.Cryptography;
using TdeEngine.Kms.Envelope;
using TdeEngine.Kms.Secrets;

namespace TdeEngine.Storage.Keys;

/// <summary>
/// Unwrapped DEKs, kept for a TTL so that opening a database does not call the KMS every time. After
/// the TTL the next open asks the KMS again, so a disabled or deleted KMS key stops new opens within
/// the TTL (connections already open keep their keys until they close).
/// </summary>
/// <remarks>Thread-safe. Entries are wiped when they expire, are replaced, or the cache is cleared.</remarks>
internal sealed class DekCache(IDataKeyProvider provider, TimeProvider time, TimeSpan ttl)
{
    private readonly ConcurrentDictionary<string, Entry> _entries = new(StringComparer.Ordinal);

    public IDataKeyProvider Provider => provider;

    /// <summary>Returns a copy of the DEK (the caller wipes it), from the cache or from the KMS.</summary>
    public SecretBuffer Get(byte[] wrapped, EncryptionContext context)
    {
        var id = Convert.ToHexString(SHA256.HashData(wrapped)) + "|" + context;
        var now = time.GetTimestamp();
        if (_entries.TryGetValue(id, out var entry))
        {
            if (time.GetElapsedTime(entry.FetchedAt, now) < ttl)
            {
                lock (entry)
                {
                    if (!entry.Key.IsDisposed)
                    {
                        return SecretBuffer.CopyFrom(entry.Key.Span);
                    }
                }
            }

            Evict(id, entry);
        }

        var key = provider.Decrypt(wrapped, context);
        var fresh = new Entry(SecretBuffer.CopyFrom(key.Span), now);
        if (ttl > TimeSpan.Zero)
        {
            _entries.AddOrUpdate(id, fresh, (_, old) =>
            {
                Wipe(old);
                return fresh;
            });
        }
        else
        {
            fresh.Key.Dispose();
        }

        return key;
    }

    /// <summary>Remembers a DEK that was just generated (so creating a database does not unwrap it again).</summary>
    public void Add(byte[] wrapped, EncryptionContext context, ReadOnlySpan<byte> dek)
    {
        if (ttl > TimeSpan.Zero)
        {
            var id = Convert.ToHexString(SHA256.HashData(wrapped)) + "|" + context;
            var fresh = new Entry(SecretBuffer.CopyFrom(dek), time.GetTimestamp());
            _entries.AddOrUpdate(id, fresh, (_, old) =>
            {
                Wipe(old);
                return fresh;
            });
        }
    }

    /// <summary>Wipes every cached DEK.</summary>
    public void Clear()
    {
        foreach (var (id, entry) in _entries)
        {
            Evict(id, entry);
        }
    }

    private void Evict(string id, Entry entry)
    {
        if (_entries.TryRemove(new KeyValuePair<string, Entry>(id, entry)))
        {
            Wipe(entry);
        }
    }

    private static void Wipe(Entry entry)
    {
        lock (entry)
        {
            entry.Key.Dispose();
        }
    }

    private sealed record Entry(SecretBuffer Key, long FetchedAt);
}
