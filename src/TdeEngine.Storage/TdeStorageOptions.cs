using TdeEngine.Storage.Pages;

namespace TdeEngine.Storage;

/// <summary>Settings of the TDE VFS. Every default is documented; <see cref="Validate"/> checks ranges.</summary>
public sealed class TdeStorageOptions
{
    /// <summary>The VFS name used in connection strings (<c>Vfs=tde</c>). Default <c>tde</c>.</summary>
    public string VfsName { get; set; } = "tde";

    /// <summary>
    /// The KMS key that wraps the DEK of new databases, unless the URI names one (<c>kms_key=</c>).
    /// Default <c>alias/acs/rds</c>, the RDS service key, created on first use.
    /// </summary>
    public string DefaultKmsKeyId { get; set; } = "alias/acs/rds";

    /// <summary>The cipher suite of new databases, unless the URI names one (<c>cipher=</c>). Default AES-256-GCM.</summary>
    public PageCipherSuite DefaultCipher { get; set; } = PageCipherSuite.Aes256Gcm;

    /// <summary>The page size of new databases, unless the URI names one (<c>page_size=</c>). Default 4096.</summary>
    public int DefaultPageSize { get; set; } = 4096;

    /// <summary>
    /// How long an unwrapped DEK is reused for new opens before the KMS is asked again. A disabled
    /// or deleted KMS key stops new opens within this time. Default 5 minutes; zero asks on every open.
    /// </summary>
    public TimeSpan DekCacheTtl { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// How many bytes of a TDE database each connection memory-maps for reads: SQLite's
    /// <c>PRAGMA mmap_size</c>, set when a connection opens a TDE database, unless the URI names a
    /// value (<c>mmap_size=</c>); the app's own PRAGMA still overrides it. Reads then copy sealed
    /// pages from the mapping instead of making a system call each; every page is still
    /// authenticated and decrypted. Default 0 (off, as in SQLite): with a mapping, a file truncated
    /// behind SQLite's back or a disk read error ends the process with SIGBUS instead of a typed
    /// error (docs/threat-model.md).
    /// </summary>
    public long MemoryMapSize { get; set; }

    /// <summary>
    /// How long a connection to a TDE database waits inside SQLite for a lock another connection
    /// holds: SQLite's <c>PRAGMA busy_timeout</c>, set when the connection opens (the app's own PRAGMA
    /// still overrides it). SQLite then retries in steps of a few milliseconds. Without it,
    /// Microsoft.Data.Sqlite retries a busy statement only after sleeping 150 ms, so a commit that
    /// meets another writer, a checkpoint or a <c>tde db rekey</c> batch waits hundreds of
    /// milliseconds instead of a few (docs/benchmarks.md, "rekey under load"). Default 5 seconds;
    /// zero leaves SQLite's default (no wait).
    /// </summary>
    public TimeSpan BusyTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>The clock for the DEK cache.</summary>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    public void Validate()
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(VfsName);
        ArgumentException.ThrowIfNullOrWhiteSpace(DefaultKmsKeyId);
        ValidatePageSize(DefaultPageSize);
        if (DekCacheTtl < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(DekCacheTtl), "The DEK cache TTL cannot be negative.");
        }

        ArgumentOutOfRangeException.ThrowIfNegative(MemoryMapSize);
        if (BusyTimeout < TimeSpan.Zero || BusyTimeout.TotalMilliseconds > int.MaxValue)
        {
            throw new ArgumentOutOfRangeException(nameof(BusyTimeout), "The busy timeout is from zero to int.MaxValue milliseconds.");
        }
        ArgumentNullException.ThrowIfNull(TimeProvider);
    }

    internal static bool IsValidPageSize(int pageSize) => pageSize is >= 1024 and <= 65536 && (pageSize & (pageSize - 1)) == 0;

    internal static void ValidatePageSize(int pageSize)
    {
        if (!IsValidPageSize(pageSize))
        {
            throw new ArgumentOutOfRangeException(nameof(pageSize), "A page size is a power of two from 1024 to 65536.");
        }
    }
}
