using System.Security.Cryptography;
using TdeEngine.Kms.Envelope;
using TdeEngine.Kms.Store;
using TdeEngine.Storage.Errors;
using TdeEngine.Storage.Keys;

namespace TdeEngine.Objects;

/// <summary>
/// Envelope encryption of a stream of any length: a fresh KMS data key per object, a fixed-size
/// header, then AES-256-GCM chunks that can be read in any order. The format is drawn in
/// docs/objects.md.
/// </summary>
/// <remarks>
/// <para>A sealed object starts at the stream's position when a method is called and runs to the end
/// of the stream. Its plaintext length is not stored: it follows from the stream length, so
/// <see cref="Seal"/> also works on streams that cannot seek (a network stream).</para>
/// <para>Errors: <see cref="TdeStorageException"/> with <c>Tde.NotSealedObject</c> (no magic),
/// <c>Tde.EnvelopeDamaged</c> (a header that does not parse), <c>Tde.ObjectAuthenticationFailed</c>
/// (a chunk that fails authentication, truncation included; <see cref="TdeStorageException.PageNumber"/>
/// is the 0-based chunk index), <c>Tde.InvalidParameter</c>. KMS refusals are the provider's
/// <c>KmsException</c>, unchanged.</para>
/// <para>All methods are thread-safe as long as each call has its own streams.</para>
/// </remarks>
public static class SealedObject
{
    /// <summary>The default chunk size: 64 KiB of plaintext per chunk.</summary>
    public const int DefaultChunkSize = 64 * 1024;

    /// <summary>
    /// Reads <paramref name="plaintext"/> to its end and writes it sealed to <paramref name="destination"/>:
    /// one GenerateDataKey under <paramref name="kmsKeyId"/> with <paramref name="context"/> (a fresh
    /// data key per object), the header, then the chunks.
    /// </summary>
    /// <param name="plaintext">Read until it ends. Need not seek. Not disposed.</param>
    /// <param name="destination">Written from its current position. Need not seek. Flushed, not disposed.</param>
    /// <param name="keys">Where the data key comes from.</param>
    /// <param name="kmsKeyId">A key id, key ARN or alias (<c>alias/acs/oss</c> for the OSS service key).</param>
    /// <param name="context">Bound to the data key (KMS) and to every chunk (AAD). Open must present the same.</param>
    /// <param name="chunkSize">Plaintext bytes per chunk, 16 bytes to 16 MiB.</param>
    /// <returns>The header's fields and the number of plaintext bytes sealed.</returns>
    public static SealedObjectInfo Seal(Stream plaintext, Stream destination, IDataKeyProvider keys, string kmsKeyId,
        EncryptionContext context, int chunkSize = DefaultChunkSize) =>
        SealCore(plaintext, destination, keys, kmsKeyId, context, chunkSize, EncryptionContext.Empty);

    /// <summary>
    /// <see cref="Seal"/> with asynchronous reads and writes: for sources that refuse synchronous I/O,
    /// such as an ASP.NET Core request body. The same bytes as <see cref="Seal"/>.
    /// </summary>
    /// <remarks>
    /// The data key comes from <see cref="IDataKeyProvider.GenerateDataKey"/>, which is synchronous (a
    /// remote provider blocks for one request, once per object).
    /// </remarks>
    public static Task<SealedObjectInfo> SealAsync(Stream plaintext, Stream destination, IDataKeyProvider keys, string kmsKeyId,
        EncryptionContext context, int chunkSize = DefaultChunkSize, CancellationToken cancellationToken = default) =>
        SealCoreAsync(plaintext, destination, keys, kmsKeyId, context, chunkSize, EncryptionContext.Empty, cancellationToken);

    /// <summary>Seal, recording non-secret <paramref name="attributes"/> in the header (authenticated, not encrypted).</summary>
    internal static SealedObjectInfo SealCore(Stream plaintext, Stream destination, IDataKeyProvider keys, string kmsKeyId,
        EncryptionContext context, int chunkSize, EncryptionContext attributes)
    {
        using var sealer = ChunkSealer.Start(plaintext, destination, keys, kmsKeyId, context, chunkSize, attributes);
        destination.Write(sealer.HeaderBytes);
        var length = plaintext.ReadAtLeast(sealer.Current.Span, chunkSize, throwOnEndOfStream: false);
        while (true)
        {
            // A full chunk is the last one only if nothing follows it, so read one chunk ahead.
            var nextLength = length < chunkSize ? 0 : plaintext.ReadAtLeast(sealer.Next.Span, chunkSize, throwOnEndOfStream: false);
            var (sealedChunk, final) = sealer.Seal(length, nextLength);
            destination.Write(sealedChunk.Span);
            if (final)
            {
                break;
            }

            length = nextLength;
        }

        destination.Flush();
        return sealer.Info;
    }

    /// <summary><see cref="SealCore"/> with asynchronous I/O.</summary>
    internal static async Task<SealedObjectInfo> SealCoreAsync(Stream plaintext, Stream destination, IDataKeyProvider keys, string kmsKeyId,
        EncryptionContext context, int chunkSize, EncryptionContext attributes, CancellationToken cancellationToken)
    {
        using var sealer = ChunkSealer.Start(plaintext, destination, keys, kmsKeyId, context, chunkSize, attributes);
        await destination.WriteAsync(sealer.HeaderBytes, cancellationToken).ConfigureAwait(false);
        var length = await plaintext.ReadAtLeastAsync(sealer.Current, chunkSize, throwOnEndOfStream: false, cancellationToken).ConfigureAwait(false);
        while (true)
        {
            var nextLength = length < chunkSize ? 0 : await plaintext.ReadAtLeastAsync(sealer.Next, chunkSize, throwOnEndOfStream: false, cancellationToken).ConfigureAwait(false);
            var (sealedChunk, final) = sealer.Seal(length, nextLength);
            await destination.WriteAsync(sealedChunk, cancellationToken).ConfigureAwait(false);
            if (final)
            {
                break;
            }

            length = nextLength;
        }

        await destination.FlushAsync(cancellationToken).ConfigureAwait(false);
        return sealer.Info;
    }

    /// <summary>
    /// Opens a sealed object for reading: reads the header, checks that its context is
    /// <paramref name="expectedContext"/> (else <c>Tde.InvalidParameter</c>, before any KMS call),
    /// unwraps the data key (one KMS Decrypt) and authenticates the final chunk, so a truncated
    /// object fails here.
    /// </summary>
    /// <param name="source">Readable and seekable; the object starts at its current position.</param>
    /// <param name="keys">Unwraps the data key.</param>
    /// <param name="expectedContext">The context the caller expects the object to be bound to.</param>
    /// <param name="leaveOpen">False: the reader disposes <paramref name="source"/>. If Open throws, the source is not disposed.</param>
    /// <returns>A read-only, seekable stream of the plaintext that decrypts only the chunks it reads.</returns>
    public static SealedObjectReader Open(Stream source, IDataKeyProvider keys, EncryptionContext expectedContext, bool leaveOpen = false)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(keys);
        ArgumentNullException.ThrowIfNull(expectedContext);
        RequireSeekableRead(source);
        var file = FileName(source);
        var start = source.Position;
        var header = SealedObjectHeader.Read(source, file);
        if (!header.Context.CanonicalBytes.SequenceEqual(expectedContext.CanonicalBytes))
        {
            throw new TdeStorageException(TdeStorageException.Codes.InvalidParameter,
                $"Sealed object {header.ObjectIdHex} is bound to the encryption context {header.Context}, not to the expected {expectedContext}: it was sealed for another name or place, or copied there. Open it with the context it was sealed under.",
                file);
        }

        var (plaintextLength, chunkCount) = header.Layout(source.Length - start - header.HeaderSize, file);
        AesGcm aes;
        using (var dataKey = keys.Decrypt(header.Wrapped, header.Context))
        {
            if (dataKey.Length != 32)
            {
                throw new TdeStorageException(TdeStorageException.Codes.EnvelopeDamaged,
                    $"The data key of sealed object {header.ObjectIdHex} is {dataKey.Length} bytes, not 32. Restore the object from a backup.", file);
            }

            aes = new AesGcm(dataKey.Span, SealedObjectHeader.TagSize);
        }

        var reader = new SealedObjectReader(source, start, header, plaintextLength, chunkCount, aes, leaveOpen, file);
        try
        {
            reader.AuthenticateFinalChunk();
            return reader;
        }
        catch
        {
            reader.Abandon();
            throw;
        }
    }

    /// <summary>Reads the header only (no KMS call) and derives the plaintext length from the stream length.</summary>
    /// <param name="source">Readable and seekable; the object starts at its current position. Left open.</param>
    public static SealedObjectInfo Inspect(Stream source)
    {
        ArgumentNullException.ThrowIfNull(source);
        RequireSeekableRead(source);
        return InspectHeader(source).Info;
    }

    internal static (SealedObjectHeader Header, SealedObjectInfo Info) InspectHeader(Stream source)
    {
        var file = FileName(source);
        var start = source.Position;
        var header = SealedObjectHeader.Read(source, file);
        var (plaintextLength, _) = header.Layout(source.Length - start - header.HeaderSize, file);
        return (header, SealedObjectInfo.From(header, plaintextLength));
    }

    /// <summary>
    /// Re-wraps the object's data key under <paramref name="destinationKeyId"/> (KMS ReEncrypt; the
    /// data key never leaves the KMS) and rewrites only the envelope part of the header, in place.
    /// The chunks, the object id and the context stay byte-identical.
    /// </summary>
    /// <param name="object">Readable, writable and seekable; the object starts at its current position. Left open, flushed.</param>
    /// <param name="keys">Performs the ReEncrypt.</param>
    /// <param name="destinationKeyId">The key to wrap the data key under (id, ARN or alias).</param>
    /// <remarks>
    /// The new ARN and wrapped key must fit in the existing header (writers leave 512 bytes spare);
    /// otherwise <c>Tde.InvalidParameter</c> and the object is unchanged. The header write is not
    /// atomic: a crash during it can leave the envelope torn; for files, <see cref="RewrapFile"/> is
    /// crash-safe.
    /// </remarks>
    public static SealedObjectInfo Rewrap(Stream @object, IDataKeyProvider keys, string destinationKeyId)
    {
        ArgumentNullException.ThrowIfNull(@object);
        ArgumentNullException.ThrowIfNull(keys);
        ArgumentException.ThrowIfNullOrWhiteSpace(destinationKeyId);
        RequireSeekableRead(@object);
        if (!@object.CanWrite)
        {
            throw new ArgumentException("Rewrap rewrites the header in place: the stream must be writable.", nameof(@object));
        }

        var file = FileName(@object);
        var start = @object.Position;
        var (header, info) = InspectHeader(@object);
        var rewrapped = keys.ReEncrypt(header.Wrapped, header.Context, destinationKeyId);
        var updated = header.WithEnvelope(rewrapped.KmsKeyArn, rewrapped.Wrapped, file);
        @object.Position = start + header.Immutable.Length;
        @object.Write(updated.EnvelopeBytes());
        if (@object is FileStream fileStream)
        {
            fileStream.Flush(flushToDisk: true);
        }
        else
        {
            @object.Flush();
        }

        return SealedObjectInfo.From(updated, info.PlaintextLength);
    }

    /// <summary>
    /// <see cref="Rewrap"/> for an object in a file, crash-safe: the object is copied to a temporary
    /// file beside it, re-wrapped there, fsynced, and renamed over the original (then the folder is
    /// fsynced). A crash at any point leaves either the old or the new object, never a torn header.
    /// </summary>
    /// <param name="path">The sealed object's file.</param>
    /// <param name="keys">Performs the ReEncrypt.</param>
    /// <param name="destinationKeyId">The key to wrap the data key under (id, ARN or alias).</param>
    /// <remarks>
    /// Costs a copy of the file (the chunks are copied as they are, never decrypted). A writer that
    /// replaces the file meanwhile loses to this rename: callers serialize writes to one object.
    /// </remarks>
    public static SealedObjectInfo RewrapFile(string path, IDataKeyProvider keys, string destinationKeyId)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var full = Path.GetFullPath(path);
        var folder = Path.GetDirectoryName(full)!;
        var temp = Path.Combine(folder, $".tde-tmp-rewrap-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8))}");
        try
        {
            SealedObjectInfo info;
            using (var source = new FileStream(full, FileMode.Open, FileAccess.Read, FileShare.Read))
            using (var copy = new FileStream(temp, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None))
            {
                source.CopyTo(copy);
                copy.Position = 0;
                info = Rewrap(copy, keys, destinationKeyId);
            }

            File.Move(temp, full, overwrite: true);
            DirectoryFlush.Flush(folder);
            return info;
        }
        finally
        {
            if (File.Exists(temp))
            {
                File.Delete(temp);
            }
        }
    }

    private static void RequireSeekableRead(Stream source)
    {
        if (!source.CanRead || !source.CanSeek)
        {
            throw new ArgumentException("A sealed object is read from a readable, seekable stream (a file, or a MemoryStream of a downloaded object).", nameof(source));
        }
    }

    private static string? FileName(Stream stream) => (stream as FileStream)?.Name;
}
