using System.Buffers.Binary;
using System.Security.Cryptography;
using TdeEngine.Kms.Store;
using TdeEngine.Storage.Errors;

namespace TdeEngine.Storage.Envelope;

/// <summary>
/// The journal of a DEK re-encryption (<c>&lt;database&gt;-tderekey</c>): the sealed images of the
/// pages of the batch being rewritten in place, as they were before, made durable before the
/// first of them is overwritten. Rewriting a page is not atomic on power loss; a page left torn
/// is put back from here (it holds the same plaintext, sealed under a DEK the envelope still lists).
/// </summary>
/// <remarks>
/// Layout (big-endian): magic "TDERKJ01" | database id (16) | page size (4) | n (4) | n times
/// [page number (4) | sealed image (page size)] | SHA-256 of everything before it (32). A journal
/// whose magic is zeroed was cleared after its batch became durable; one whose checksum does not
/// match was not complete (no page of its batch had been overwritten yet). Both are ignored. The
/// file is overwritten batch after batch, never truncated, so bytes past the checksum are left
/// over from a larger batch. It holds only sealed images, never a key or plaintext.
/// </remarks>
internal static class RekeyJournal
{
    private static ReadOnlySpan<byte> Magic => "TDERKJ01"u8;

    private const int HeaderSize = 32;

    public static string PathFor(string database) => database + "-tderekey";

    /// <summary>True when a journal with a batch in it lies beside the database (a re-encryption was interrupted, or is running).</summary>
    public static bool IsPending(string database)
    {
        try
        {
            using var handle = File.OpenHandle(PathFor(database), FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            Span<byte> magic = stackalloc byte[8];
            return RandomAccess.Read(handle, magic, 0) == 8 && magic.SequenceEqual(Magic);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>Writes the batch's page images and makes them durable (the file, and the directory when the file is new).</summary>
    public static void Write(string database, ReadOnlySpan<byte> databaseId, int pageSize, IReadOnlyList<(long Page, byte[] Image)> pages)
    {
        var path = PathFor(database);
        var created = !File.Exists(path);
        var bytes = new byte[HeaderSize + (pages.Count * (4 + pageSize)) + 32];
        Magic.CopyTo(bytes);
        databaseId.CopyTo(bytes.AsSpan(8, 16));
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(24), pageSize);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(28), pages.Count);
        var at = HeaderSize;
        foreach (var (page, image) in pages)
        {
            BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(at), checked((uint)page));
            image.AsSpan(0, pageSize).CopyTo(bytes.AsSpan(at + 4));
            at += 4 + pageSize;
        }

        SHA256.HashData(bytes.AsSpan(0, at), bytes.AsSpan(at, 32));
        // Written over the previous batch, never truncated: the file keeps its blocks, so the fsync
        // flushes data only (a truncate and a regrowth per batch cost a block allocation each time).
        using (var handle = File.OpenHandle(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.ReadWrite))
        {
            RandomAccess.Write(handle, bytes, 0);
            RandomAccess.FlushToDisk(handle);
        }

        if (created)
        {
            DirectoryFlush.Flush(Path.GetDirectoryName(path)!);
        }
    }

    /// <summary>The page images of a complete journal; empty when there is none (missing, empty, or never completed).</summary>
    public static IReadOnlyList<(long Page, byte[] Image)> Read(string database, ReadOnlySpan<byte> databaseId, int pageSize)
    {
        var path = PathFor(database);
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (FileNotFoundException)
        {
            return [];
        }

        if (bytes.Length < HeaderSize + 32 || !bytes.AsSpan(0, 8).SequenceEqual(Magic))
        {
            return [];
        }

        var count = BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(28));
        var length = HeaderSize + ((long)count * (4 + pageSize));
        if (count < 0 || length + 32 > bytes.Length || BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(24)) != pageSize ||
            !SHA256.HashData(bytes.AsSpan(0, (int)length)).AsSpan().SequenceEqual(bytes.AsSpan((int)length, 32)))
        {
            return [];
        }

        if (!bytes.AsSpan(8, 16).SequenceEqual(databaseId))
        {
            throw new TdeStorageException(TdeStorageException.Codes.UnsupportedOperation,
                $"'{path}' is the re-encryption journal of another database. Move it away and retry.", database);
        }

        var pages = new List<(long, byte[])>(count);
        for (var at = HeaderSize; at < length; at += 4 + pageSize)
        {
            pages.Add((BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(at)), bytes.AsSpan(at + 4, pageSize).ToArray()));
        }

        return pages;
    }

    /// <summary>
    /// Invalidates the journal once its batch is durable in the database: its magic is zeroed and
    /// made durable (a stale batch must never be taken for a current one). The file stays, for the
    /// next batch.
    /// </summary>
    public static void Clear(string database)
    {
        var path = PathFor(database);
        if (!File.Exists(path))
        {
            return;
        }

        using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        if (RandomAccess.GetLength(handle) >= 8)
        {
            RandomAccess.Write(handle, new byte[8], 0);
            RandomAccess.FlushToDisk(handle);
        }
    }

    /// <summary>Removes the journal when the re-encryption is finished.</summary>
    public static void Delete(string database)
    {
        var path = PathFor(database);
        if (File.Exists(path))
        {
            File.Delete(path);
            DirectoryFlush.Flush(Path.GetDirectoryName(path)!);
        }
    }
}
