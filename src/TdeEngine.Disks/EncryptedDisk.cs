using System.Buffers;
using System.Security.Cryptography;
using Microsoft.Win32.SafeHandles;
using TdeEngine.Disks.Files;
using TdeEngine.Disks.Format;
using TdeEngine.Disks.Xts;
using TdeEngine.Kms.Envelope;
using TdeEngine.Kms.Secrets;
using TdeEngine.Kms.Store;
using TdeEngine.Storage.Errors;
using TdeEngine.Storage.Keys;

namespace TdeEngine.Disks;

/// <summary>
/// An encrypted cloud disk, modelled on Alibaba ECS disk encryption: a fixed-size disk image file
/// whose sectors are sealed with XTS-AES-256 under a per-disk data key (DEK) from the KMS. The DEK is
/// wrapped by a KMS key (the service key <c>alias/acs/ecs</c> or a CMK) and bound to an
/// EncryptionContext; when that key is disabled, the disk cannot be attached (opened) again.
/// </summary>
/// <remarks>
/// <para>An instance is an attached disk: it holds an exclusive lock on the image (a second
/// <see cref="Open"/>, in this or another process, fails with
/// <see cref="TdeStorageException.Codes.DiskInUse"/>) and the XTS keys in memory, both released by
/// <see cref="Dispose"/>. The plaintext DEK and the derived XTS key bytes are wiped as soon as the
/// two <see cref="Aes"/> objects are keyed.</para>
/// <para>Thread-safe: <see cref="Read"/>, <see cref="Write"/>, <see cref="Flush"/> and
/// <see cref="CreateSnapshot"/> run one at a time under an internal lock, so each call sees and
/// leaves whole sectors. Callers' buffers are only used for the duration of the call.</para>
/// <para>XTS gives confidentiality only: a sector is not authenticated, so a changed or replayed
/// sector decrypts to garbage or old data without an error. Use the SQLite VFS (TdeEngine.Storage)
/// where tampering must be detected. See docs/disks.md.</para>
/// </remarks>
public sealed class EncryptedDisk : IDisposable
{
    // Sectors are read, decrypted, encrypted and written in chunks of at most this many bytes.
    private const int MaxChunkBytes = 256 * 1024;
    private const int SnapshotChunkBytes = 1024 * 1024;

    private readonly Lock _gate = new();
    private readonly SafeFileHandle _handle;
    private readonly DiskHeader _header;
    private readonly XtsAes256 _xts;
    private bool _disposed;

    private EncryptedDisk(string path, SafeFileHandle handle, DiskHeader header, XtsAes256 xts)
    {
        Path = path;
        _handle = handle;
        _header = header;
        _xts = xts;
    }

    /// <summary>The full path of the image file.</summary>
    public string Path { get; }

    /// <summary>Usable bytes.</summary>
    public long Size => _header.Size;

    /// <summary>Bytes per sector: 512 or 4096.</summary>
    public int SectorSize => _header.SectorSize;

    /// <summary>The disk id: <c>d-</c> and 20 lowercase hex characters, random at <see cref="Create"/>.</summary>
    public string DiskId => _header.DiskIdText;

    /// <summary>The ARN of the KMS key that wraps the disk's DEK.</summary>
    public string KmsKeyArn => _header.KmsKeyArn;

    /// <summary>The EncryptionContext the DEK is bound to.</summary>
    public EncryptionContext Context => _header.Context;

    /// <summary>
    /// Creates a new, zero-filled (sparse) disk image of <paramref name="sizeBytes"/> usable bytes with
    /// a fresh DEK from <c>GenerateDataKey(<paramref name="kmsKeyId"/>, <paramref name="context"/>)</c>,
    /// and attaches it.
    /// </summary>
    /// <param name="path">The image file; it must not exist.</param>
    /// <param name="sizeBytes">Usable bytes: positive and a multiple of <paramref name="sectorSize"/>.</param>
    /// <param name="keys">Where the DEK comes from.</param>
    /// <param name="kmsKeyId">The KMS key (id, ARN or alias, for example <c>alias/acs/ecs</c>) that wraps the DEK.</param>
    /// <param name="context">The EncryptionContext the DEK is bound to; stored in the header.</param>
    /// <param name="sectorSize">512 or 4096.</param>
    /// <param name="preallocate">
    /// False (default): a sparse image, where a sector that was never written reads as zeros, so an
    /// attacker who can write the image can also reset any sector to zeros. True: every sector is
    /// written with encrypted zeros now (the whole size on disk, and the time to write it), and no
    /// sector is special afterwards: a zeroed ciphertext reads as noise, as with plain XTS.
    /// </param>
    /// <exception cref="TdeStorageException"><see cref="TdeStorageException.Codes.InvalidParameter"/> for a bad size or sector size, an existing file, or a key ARN and context too long for the header.</exception>
    /// <exception cref="TdeEngine.Kms.Errors.KmsException">The KMS refused to generate the DEK (propagated unchanged).</exception>
    public static EncryptedDisk Create(string path, long sizeBytes, IDataKeyProvider keys, string kmsKeyId, EncryptionContext context, int sectorSize = 4096,
        bool preallocate = false) =>
        CreateImage(path, sizeBytes, keys, kmsKeyId, context, sectorSize, preallocate, sealZeros: preallocate);

    // sealZeros false with preallocate true: the caller writes every sector itself (a re-encrypted
    // copy of a preallocated disk), so sealing zeros first would write the image twice.
    private static EncryptedDisk CreateImage(string path, long sizeBytes, IDataKeyProvider keys, string kmsKeyId, EncryptionContext context, int sectorSize,
        bool preallocate, bool sealZeros)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(keys);
        ArgumentException.ThrowIfNullOrEmpty(kmsKeyId);
        ArgumentNullException.ThrowIfNull(context);
        var fullPath = System.IO.Path.GetFullPath(path);
        if (!DiskHeader.IsSupportedSectorSize(sectorSize))
        {
            throw Invalid(fullPath, $"The sector size {sectorSize} is not supported; use 512 or 4096.");
        }

        if (sizeBytes <= 0 || sizeBytes % sectorSize != 0 || sizeBytes > long.MaxValue - DiskHeader.RegionSize)
        {
            throw Invalid(fullPath, $"The disk size {sizeBytes} is not valid: it must be positive and a multiple of the sector size ({sectorSize} bytes).");
        }

        DiskFile.ThrowIfExists(fullPath);   // before the KMS call, so a refused path costs no DEK
        DiskFile.ThrowIfFolderMissing(fullPath);

        var diskId = RandomNumberGenerator.GetBytes(DiskHeader.DiskIdSize);
        using var dataKey = keys.GenerateDataKey(kmsKeyId, context);
        CheckDek(dataKey.Plaintext, fullPath);
        var header = new DiskHeader
        {
            Sequence = 1,
            DiskId = diskId,
            SectorSize = sectorSize,
            Size = sizeBytes,
            KmsKeyArn = dataKey.KmsKeyArn,
            Context = context,
            WrappedDek = dataKey.Wrapped,
            Preallocated = preallocate,
        };
        CheckFits(header, fullPath);

        var handle = DiskFile.CreateExclusive(fullPath);
        XtsAes256? xts = null;
        try
        {
            try
            {
                RandomAccess.SetLength(handle, DiskHeader.RegionSize + sizeBytes);
            }
            catch (Exception e) when (e is ArgumentOutOfRangeException or IOException)
            {
                throw Invalid(fullPath, $"A disk of {sizeBytes} bytes does not fit this file system ({e.Message}). Choose a smaller size.");
            }

            // Both slots hold the header from the start, so either can be torn later.
            var region = new byte[DiskHeader.RegionSize];
            WriteSlots(header, region);
            RandomAccess.Write(handle, region, 0);
            RandomAccess.FlushToDisk(handle);
            DirectoryFlush.Flush(DirectoryOf(fullPath));
            xts = DiskKeyDerivation.CreateCipher(dataKey.Plaintext.Span, diskId);
            var disk = new EncryptedDisk(fullPath, handle, header, xts);
            if (sealZeros)
            {
                disk.WriteEncryptedZeros();
            }

            return disk;
        }
        catch
        {
            xts?.Dispose();
            handle.Dispose();
            TryDelete(fullPath);
            throw;
        }
    }

    /// <summary>
    /// Attaches an existing image: reads its header, unwraps the DEK through <paramref name="keys"/>
    /// and takes an exclusive lock on the file.
    /// </summary>
    /// <exception cref="TdeStorageException"><see cref="TdeStorageException.Codes.DiskInUse"/> when it is attached elsewhere;
    /// <see cref="TdeStorageException.Codes.NotTdeDisk"/> for a file that is not a disk image;
    /// <see cref="TdeStorageException.Codes.EnvelopeDamaged"/> when both header copies are damaged or the file is truncated.</exception>
    /// <exception cref="TdeEngine.Kms.Errors.KmsException">The KMS refused to unwrap the DEK, for example <c>Rejected.Disabled</c> (propagated unchanged).</exception>
    public static EncryptedDisk Open(string path, IDataKeyProvider keys)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(keys);
        var fullPath = System.IO.Path.GetFullPath(path);
        var handle = DiskFile.OpenExclusive(fullPath);
        try
        {
            var header = ReadHeader(handle, fullPath);
            if (RandomAccess.GetLength(handle) < DiskHeader.RegionSize + header.Size)
            {
                throw new TdeStorageException(TdeStorageException.Codes.EnvelopeDamaged,
                    $"The disk image '{fullPath}' is shorter than its header says ({header.Size} usable bytes after an 8192-byte header): it was truncated. Restore it from a backup or a snapshot.",
                    fullPath);
            }

            using var dek = keys.Decrypt(header.WrappedDek, header.Context);
            CheckDek(dek, fullPath);
            var xts = DiskKeyDerivation.CreateCipher(dek.Span, header.DiskId);
            return new EncryptedDisk(fullPath, handle, header, xts);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>Reads the header only: no KMS call and no lock, so it works while the disk is attached or its key is disabled.</summary>
    /// <exception cref="TdeStorageException"><see cref="TdeStorageException.Codes.NotTdeDisk"/> or <see cref="TdeStorageException.Codes.EnvelopeDamaged"/>.</exception>
    public static EncryptedDiskInfo Inspect(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var fullPath = System.IO.Path.GetFullPath(path);
        using var handle = DiskFile.OpenForInspect(fullPath);
        return ReadHeader(handle, fullPath).ToInfo();
    }

    /// <summary>
    /// Re-wraps the disk's DEK under the current version of <paramref name="destinationKeyId"/>
    /// (KMS ReEncrypt; the plaintext DEK never leaves the KMS) and writes it to the older header slot.
    /// Only the header changes; the sectors stay as they are.
    /// </summary>
    /// <remarks>
    /// Crash-safe: the new header goes to the slot that does not hold the current one and is fsynced
    /// (until then the current slot wins), then to the other slot as well, so the previous wrapping
    /// does not stay in the file.
    /// </remarks>
    /// <exception cref="TdeStorageException"><see cref="TdeStorageException.Codes.DiskInUse"/> while the disk is attached.</exception>
    /// <exception cref="TdeEngine.Kms.Errors.KmsException">The KMS refused (propagated unchanged).</exception>
    public static EncryptedDiskInfo Rewrap(string path, IDataKeyProvider keys, string destinationKeyId)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(keys);
        ArgumentException.ThrowIfNullOrEmpty(destinationKeyId);
        var fullPath = System.IO.Path.GetFullPath(path);
        using var handle = DiskFile.OpenExclusive(fullPath);
        var current = ReadHeader(handle, fullPath);
        var rewrapped = keys.ReEncrypt(current.WrappedDek, current.Context, destinationKeyId);
        var next = current with { Sequence = current.Sequence + 1, KmsKeyArn = rewrapped.KmsKeyArn, WrappedDek = rewrapped.Wrapped };
        CheckFits(next, fullPath);
        var slot = new byte[DiskHeader.SlotSize];

        // First the slot that does not hold the current header: a crash here leaves the current one.
        // Then, once that is durable, the other slot too, so no copy of the old wrapping stays in
        // the file (a retired or compromised key must open nothing here); a crash during this
        // second write leaves the first new slot, which is valid and newer.
        foreach (var header in new[] { next, next with { Sequence = next.Sequence + 1 } })
        {
            header.WriteSlot(slot);
            RandomAccess.Write(handle, slot, DiskHeader.SlotOffset(header.Sequence));
            RandomAccess.FlushToDisk(handle);
        }

        return next.ToInfo();
    }

    /// <summary>Reads <paramref name="destination"/>.Length bytes at <paramref name="offset"/> (any offset and length within <see cref="Size"/>).</summary>
    /// <remarks>A sector that was never written reads as zeros.</remarks>
    /// <exception cref="TdeStorageException"><see cref="TdeStorageException.Codes.InvalidParameter"/> when the range is not within the disk.</exception>
    public void Read(long offset, Span<byte> destination)
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            CheckRange(offset, destination.Length);
            if (destination.IsEmpty)
            {
                return;
            }

            var buffer = RentChunk(offset, destination.Length);
            try
            {
                foreach (var run in Runs(offset, destination.Length))
                {
                    var chunk = new ArraySegment<byte>(buffer, 0, run.Count * SectorSize);
                    ReadSectors(run.Sector, chunk);
                    chunk.AsSpan(run.SkipHead, run.Bytes).CopyTo(destination[(int)(run.From - offset)..]);
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer, clearArray: true);
            }
        }
    }

    /// <summary>Writes <paramref name="source"/> at <paramref name="offset"/>; partial sectors are read, merged and re-encrypted.</summary>
    /// <remarks>Durable only after <see cref="Flush"/>. A crash mid-write can leave a sector old or new (or, on storage without atomic sector writes, torn).</remarks>
    /// <exception cref="TdeStorageException"><see cref="TdeStorageException.Codes.InvalidParameter"/> when the range is not within the disk; nothing is written then.</exception>
    public void Write(long offset, ReadOnlySpan<byte> source)
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            CheckRange(offset, source.Length);
            if (source.IsEmpty)
            {
                return;
            }

            var buffer = RentChunk(offset, source.Length);
            try
            {
                foreach (var run in Runs(offset, source.Length))
                {
                    var chunk = new ArraySegment<byte>(buffer, 0, run.Count * SectorSize);
                    if (run.SkipHead > 0)
                    {
                        ReadSectors(run.Sector, chunk[..SectorSize]);   // keep the head of a partial first sector
                    }

                    if (run.SkipHead + run.Bytes < chunk.Count && (run.Count > 1 || run.SkipHead == 0))
                    {
                        ReadSectors(run.Sector + run.Count - 1, chunk[((run.Count - 1) * SectorSize)..]);   // and the tail of a partial last one
                    }

                    source.Slice((int)(run.From - offset), run.Bytes).CopyTo(chunk.AsSpan(run.SkipHead));
                    _xts.EncryptSectors((ulong)run.Sector, SectorSize, chunk);
                    RandomAccess.Write(_handle, chunk, DataOffset(run.Sector));
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer, clearArray: true);
            }
        }
    }

    /// <summary>fsync of the image: everything written so far survives a power cut.</summary>
    public void Flush()
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            RandomAccess.FlushToDisk(_handle);
        }
    }

    /// <summary>
    /// A seekable read/write <see cref="Stream"/> of fixed <see cref="Stream.Length"/> = <see cref="Size"/>
    /// over this disk. It does not own the disk: disposing it leaves the disk attached, and it stops
    /// working when the disk is disposed. Writes past the end throw
    /// <see cref="TdeStorageException"/> (<see cref="TdeStorageException.Codes.InvalidParameter"/>); <c>SetLength</c> is not supported.
    /// </summary>
    /// <remarks>The stream keeps its own position and is not thread-safe; the disk underneath is.</remarks>
    public Stream AsStream()
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            return new EncryptedDiskStream(this);
        }
    }

    /// <summary>
    /// Writes a consistent copy of the disk to <paramref name="snapshotPath"/>: a disk image under the
    /// same KMS key, DEK, disk id and context, which <see cref="Open"/> attaches like any other.
    /// </summary>
    /// <remarks>
    /// Taken under the disk's lock after a flush, so no write is half in it. The copy keeps the
    /// ciphertext as is (nothing is decrypted) and stays sparse where the disk was never written. It
    /// is written to a temporary file in the same folder, fsynced, renamed into place (never over an
    /// existing file) and the folder is fsynced.
    /// </remarks>
    /// <exception cref="TdeStorageException"><see cref="TdeStorageException.Codes.InvalidParameter"/> when <paramref name="snapshotPath"/> exists.</exception>
    public void CreateSnapshot(string snapshotPath)
    {
        ArgumentException.ThrowIfNullOrEmpty(snapshotPath);
        WriteCopy(snapshotPath, temp =>
        {
            using var copy = DiskFile.CreateExclusive(temp);
            RandomAccess.SetLength(copy, DiskHeader.RegionSize + Size);
            // A fresh pair of slots with the current header: the copy carries no older wrapping.
            var region = new byte[DiskHeader.RegionSize];
            WriteSlots(_header, region);
            RandomAccess.Write(copy, region, 0);
            ForEachWrittenRun((sector, run) => RandomAccess.Write(copy, run, DataOffset(sector)));
            RandomAccess.FlushToDisk(copy);
            return 0;
        });
    }

    /// <summary>
    /// Writes a consistent copy of the disk to <paramref name="targetPath"/> under a <b>new DEK</b>
    /// from <paramref name="kmsKeyId"/> (a new disk id too): every written sector is decrypted and
    /// sealed again, as ECS re-encrypts a snapshot copied under another key. For a DEK that must be
    /// retired (suspected leaked, or too old): copy, check, then delete the original and its snapshots.
    /// </summary>
    /// <remarks>
    /// Taken under the disk's lock after a flush. Never-written sectors stay holes. The copy is built
    /// in a temporary file beside the target (an attached disk of its own, fsynced), then moved into
    /// place without replacing anything, and the folder is fsynced; a failure or a KMS refusal leaves
    /// no file. Plaintext exists only in a pooled buffer, wiped when returned.
    /// </remarks>
    /// <returns>The new image's header.</returns>
    /// <exception cref="TdeStorageException"><see cref="TdeStorageException.Codes.InvalidParameter"/> when <paramref name="targetPath"/> exists or its folder does not.</exception>
    /// <exception cref="TdeEngine.Kms.Errors.KmsException">The KMS refused the new DEK (propagated unchanged).</exception>
    public EncryptedDiskInfo CreateReencryptedCopy(string targetPath, IDataKeyProvider keys, string kmsKeyId, EncryptionContext context)
    {
        ArgumentException.ThrowIfNullOrEmpty(targetPath);
        ArgumentNullException.ThrowIfNull(keys);
        ArgumentException.ThrowIfNullOrEmpty(kmsKeyId);
        ArgumentNullException.ThrowIfNull(context);
        return WriteCopy(targetPath, temp =>
        {
            // A preallocated source hands over every sector, so the copy needs no zeros sealed first.
            using var copy = CreateImage(temp, Size, keys, kmsKeyId, context, SectorSize, _header.Preallocated, sealZeros: false);
            ForEachWrittenRun((sector, run) =>
            {
                _xts.DecryptSectors((ulong)sector, SectorSize, run);
                copy.Write(sector * SectorSize, run);
            });
            copy.Flush();
            return copy._header.ToInfo();
        });
    }

    // A consistent copy of the disk at 'targetPath', never over an existing file: under the disk's
    // lock and after a flush, 'write' fills a temporary file beside the target (and makes it
    // durable); it is then moved into place without replacing anything and the folder is fsynced.
    // A failure leaves no file behind.
    private T WriteCopy<T>(string targetPath, Func<string, T> write)
    {
        var target = System.IO.Path.GetFullPath(targetPath);
        lock (_gate)
        {
            ThrowIfDisposed();
            DiskFile.ThrowIfExists(target);
            DiskFile.ThrowIfFolderMissing(target);
            RandomAccess.FlushToDisk(_handle);
            var directory = DirectoryOf(target);
            var temp = System.IO.Path.Combine(directory,
                "." + System.IO.Path.GetFileName(target) + ".tmp-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8)));
            try
            {
                var result = write(temp);
                DiskFile.MoveNoReplace(temp, target);
                DirectoryFlush.Flush(directory);
                return result;
            }
            catch
            {
                TryDelete(temp);
                throw;
            }
        }
    }

    /// <summary>Detaches the disk: disposes the keys and releases the file and its lock. Idempotent.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            _xts.Dispose();
            _handle.Dispose();
        }
    }

    private long DataOffset(long sector) => DiskHeader.RegionSize + (sector * SectorSize);

    // Hands each run of written sectors of the disk, as ciphertext, to 'each' (its first sector and
    // the bytes, which it may change in place); never-written (all-zero) sectors are skipped, so a
    // copy stays sparse. The buffer is wiped when returned.
    private void ForEachWrittenRun(Action<long, ArraySegment<byte>> each)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(SnapshotChunkBytes);
        try
        {
            for (long at = 0; at < Size; at += SnapshotChunkBytes)
            {
                var chunk = new ArraySegment<byte>(buffer, 0, (int)Math.Min(SnapshotChunkBytes, Size - at));
                ReadFully(_handle, chunk, DiskHeader.RegionSize + at, Path);
                foreach (var (first, count) in WrittenRuns(chunk))
                {
                    each((at / SectorSize) + first, chunk.Slice(first * SectorSize, count * SectorSize));
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer, clearArray: true);
        }
    }

    // Preallocation: every sector sealed from zeros, in runs, then fsynced.
    private void WriteEncryptedZeros()
    {
        var buffer = ArrayPool<byte>.Shared.Rent(MaxChunkBytes);
        try
        {
            for (long sector = 0; sector < Size / SectorSize;)
            {
                var count = (int)Math.Min((Size / SectorSize) - sector, MaxChunkBytes / SectorSize);
                var run = new ArraySegment<byte>(buffer, 0, count * SectorSize);
                run.AsSpan().Clear();
                _xts.EncryptSectors((ulong)sector, SectorSize, run);
                RandomAccess.Write(_handle, run, DataOffset(sector));
                sector += count;
            }

            RandomAccess.FlushToDisk(_handle);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer, clearArray: true);
        }
    }

    // The runs of written (not all-zero) sectors in 'sectors': the index of the first and how many.
    // On a preallocated image every sector counts as written, all-zero or not.
    private IEnumerable<(int First, int Count)> WrittenRuns(ArraySegment<byte> sectors)
    {
        var count = sectors.Count / SectorSize;
        if (_header.Preallocated)
        {
            yield return (0, count);
            yield break;
        }

        for (var i = 0; i < count;)
        {
            if (!IsWritten(sectors, i))
            {
                i++;
                continue;
            }

            var run = 1;
            while (i + run < count && IsWritten(sectors, i + run))
            {
                run++;
            }

            yield return (i, run);
            i += run;
        }
    }

    private bool IsWritten(ReadOnlySpan<byte> sectors, int index) =>
        sectors.Slice(index * SectorSize, SectorSize).ContainsAnyExcept((byte)0);

    // Reads whole sectors and decrypts them in place. An all-zero sector was never written (the image
    // is sparse), and reads as zeros: decrypting it would give noise.
    private void ReadSectors(long firstSector, ArraySegment<byte> sectors)
    {
        ReadFully(_handle, sectors, DataOffset(firstSector), Path);

        // Decrypt each run of written sectors at once (two ECB calls per run, not per sector).
        foreach (var (first, count) in WrittenRuns(sectors))
        {
            _xts.DecryptSectors((ulong)(firstSector + first), SectorSize, sectors.Slice(first * SectorSize, count * SectorSize));
        }
    }

    private byte[] RentChunk(long offset, int length) =>
        ArrayPool<byte>.Shared.Rent((int)Math.Min((((offset + length - 1) / SectorSize) - (offset / SectorSize) + 1) * SectorSize, MaxChunkBytes));

    // The byte range [offset, offset + length) as runs of whole sectors of at most MaxChunkBytes:
    // each run's first sector, sector count, the absolute offset of the first byte of the range in
    // it, how many bytes of the run's first sector come before that byte, and how many bytes of the
    // range the run holds.
    private IEnumerable<SectorRun> Runs(long offset, int length)
    {
        var end = offset + length;
        var sector = offset / SectorSize;
        var lastSector = (end - 1) / SectorSize;
        while (sector <= lastSector)
        {
            var count = (int)Math.Min(lastSector - sector + 1, MaxChunkBytes / SectorSize);
            var start = sector * SectorSize;
            var from = Math.Max(offset, start);
            var to = Math.Min(end, start + ((long)count * SectorSize));
            yield return new SectorRun(sector, count, from, (int)(from - start), (int)(to - from));
            sector += count;
        }
    }

    private readonly record struct SectorRun(long Sector, int Count, long From, int SkipHead, int Bytes);

    private void CheckRange(long offset, int length)
    {
        if (offset < 0 || offset > Size || length > Size - offset)
        {
            throw new TdeStorageException(TdeStorageException.Codes.InvalidParameter,
                $"The range of {length} bytes at offset {offset} is not within the disk '{Path}' ({Size} bytes). Stay within [0, {Size}).",
                Path, pageNumber: offset >= 0 ? offset / SectorSize : null);
        }
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    /// <summary>True once <see cref="Dispose"/> has run (the stream reports it as CanRead = false).</summary>
    internal bool IsDisposed => Volatile.Read(ref _disposed);

    private static DiskHeader ReadHeader(SafeFileHandle handle, string path)
    {
        var region = new byte[DiskHeader.RegionSize];
        int read;
        try
        {
            read = ReadAvailable(handle, region, 0);
        }
        catch (Exception e) when (e is IOException or NotSupportedException)
        {
            // A pipe or a device: no positioned reads (NotSupportedException), or a read error.
            throw DiskFile.NotAFile(path, e);
        }

        return DiskHeader.Read(region.AsSpan(0, read), path);
    }

    // Both slots: the header itself, and the same content one sequence lower in the other slot.
    private static void WriteSlots(DiskHeader header, byte[] region)
    {
        header.WriteSlot(region.AsSpan(DiskHeader.SlotOffset(header.Sequence), DiskHeader.SlotSize));
        var older = header with { Sequence = header.Sequence - 1 };
        older.WriteSlot(region.AsSpan(DiskHeader.SlotOffset(older.Sequence), DiskHeader.SlotSize));
    }

    private static int ReadAvailable(SafeFileHandle handle, Span<byte> buffer, long offset)
    {
        var total = 0;
        while (total < buffer.Length)
        {
            var n = RandomAccess.Read(handle, buffer[total..], offset + total);
            if (n == 0)
            {
                break;
            }

            total += n;
        }

        return total;
    }

    private static void ReadFully(SafeFileHandle handle, Span<byte> buffer, long offset, string path)
    {
        if (ReadAvailable(handle, buffer, offset) != buffer.Length)
        {
            throw new TdeStorageException(TdeStorageException.Codes.EnvelopeDamaged,
                $"The disk image '{path}' ended before offset {offset + buffer.Length}: it was truncated while attached. Restore it from a backup or a snapshot.",
                path);
        }
    }

    private static void CheckDek(SecretBuffer dek, string path)
    {
        if (dek.Length != DiskKeyDerivation.DekSize)
        {
            throw new TdeStorageException(TdeStorageException.Codes.KeyUnavailable,
                $"The key provider returned a data key of {dek.Length} bytes for the disk '{path}'; a disk needs {DiskKeyDerivation.DekSize}. Check the provider.",
                path);
        }
    }

    private static void CheckFits(DiskHeader header, string path)
    {
        if (header.EncodedLength > DiskHeader.SlotSize)
        {
            throw Invalid(path,
                $"The KMS key ARN, encryption context and wrapped data key need {header.EncodedLength} bytes in the disk header, but a header slot holds {DiskHeader.SlotSize}. Use a shorter encryption context.");
        }
    }

    private static TdeStorageException Invalid(string path, string message) =>
        new(TdeStorageException.Codes.InvalidParameter, message, path);

    private static string DirectoryOf(string fullPath) =>
        System.IO.Path.GetDirectoryName(fullPath) ?? System.IO.Path.GetPathRoot(fullPath) ?? ".";

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
            // best effort: the original error matters more
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
