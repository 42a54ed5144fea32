using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using TdeEngine.Kms.Envelope;
using TdeEngine.Kms.Errors;
using TdeEngine.Storage.Errors;

namespace TdeEngine.Objects;

/// <summary>
/// The fixed-size header of a sealed object: parse, build and re-wrap. See docs/objects.md §3.
/// </summary>
/// <remarks>
/// <code>
///  offset  size  field                                            part
///  0       8     magic "TDEOBJ\0\0"                                immutable (AAD)
///  8       2     format version = 1                                 "
///  10      2     cipher id (1 = AES-256-GCM)                        "
///  12      4     chunk size C (plaintext bytes per chunk)           "
///  16      4     header size H (multiple of 1024, ≥ 1024)           "
///  20      16    object id (random)                                 "
///  36      2     Lc, then Lc bytes: canonical EncryptionContext     "
///  ..      2     Lm, then Lm bytes: canonical attributes            "   (end E of the AAD)
///  E       2     La, then La bytes: KMS key ARN, UTF-8              envelope (Rewrap changes it)
///  ..      2     Lw, then Lw bytes: wrapped DEK (KMS blob)           "
///  ..      ..    zeros up to H
///  H             chunk 0, chunk 1, … (C + 16 bytes each; the last one r + 16, 0 ≤ r ≤ C)
/// </code>
/// All integers are big-endian. There is no plaintext length: it follows from the stream length.
/// </remarks>
internal sealed class SealedObjectHeader
{
    public const ushort Version = 1;
    public const ushort CipherAes256Gcm = 1;
    public const string CipherName = "AES-256-GCM";
    public const int TagSize = 16;
    public const int NonceSize = 12;
    public const int ObjectIdSize = 16;
    public const int HeaderAlignment = 1024;
    public const int MaxHeaderSize = 64 * 1024;
    public const int MinChunkSize = 16;
    public const int MaxChunkSize = 16 * 1024 * 1024;

    /// <summary>Room left for a longer ARN or wrapped DEK after a Rewrap.</summary>
    public const int RewrapReserve = 512;

    private const int PrefixSize = 36;   // up to and including the object id

    private static ReadOnlySpan<byte> Magic => "TDEOBJ\0\0"u8;

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private SealedObjectHeader(int chunkSize, int headerSize, byte[] objectId, EncryptionContext context,
        EncryptionContext attributes, string kmsKeyArn, byte[] wrapped, byte[] immutable)
    {
        ChunkSize = chunkSize;
        HeaderSize = headerSize;
        ObjectId = objectId;
        Context = context;
        Attributes = attributes;
        KmsKeyArn = kmsKeyArn;
        Wrapped = wrapped;
        Immutable = immutable;
    }

    public int ChunkSize { get; }

    public int HeaderSize { get; }

    public byte[] ObjectId { get; }

    public string ObjectIdHex => Convert.ToHexStringLower(ObjectId);

    public EncryptionContext Context { get; }

    /// <summary>Non-secret descriptive pairs (LocalBucket records the SSE algorithm here). Authenticated.</summary>
    public EncryptionContext Attributes { get; }

    public string KmsKeyArn { get; }

    public byte[] Wrapped { get; }

    /// <summary>Header bytes [0, E): the AAD of every chunk.</summary>
    public byte[] Immutable { get; }

    /// <summary>Builds the header of a new object; H is the smallest multiple of 1024 that fits it plus <see cref="RewrapReserve"/>.</summary>
    public static SealedObjectHeader Create(int chunkSize, byte[] objectId, EncryptionContext context, EncryptionContext attributes,
        string kmsKeyArn, byte[] wrapped)
    {
        var contextBytes = context.CanonicalBytes;
        var attributeBytes = attributes.CanonicalBytes;
        var immutableLength = PrefixSize + 2 + contextBytes.Length + 2 + attributeBytes.Length;
        var needed = immutableLength + EnvelopeLength(kmsKeyArn, wrapped) + RewrapReserve;
        var headerSize = Math.Max(HeaderAlignment, (needed + HeaderAlignment - 1) / HeaderAlignment * HeaderAlignment);
        if (headerSize > MaxHeaderSize)
        {
            throw new TdeStorageException(TdeStorageException.Codes.InvalidParameter,
                $"The encryption context, key ARN and wrapped key need {needed} bytes of header; a sealed object header holds at most {MaxHeaderSize}. Use a shorter encryption context.");
        }

        var immutable = new byte[immutableLength];
        var span = immutable.AsSpan();
        Magic.CopyTo(span);
        BinaryPrimitives.WriteUInt16BigEndian(span[8..], Version);
        BinaryPrimitives.WriteUInt16BigEndian(span[10..], CipherAes256Gcm);
        BinaryPrimitives.WriteUInt32BigEndian(span[12..], (uint)chunkSize);
        BinaryPrimitives.WriteUInt32BigEndian(span[16..], (uint)headerSize);
        objectId.CopyTo(span[20..]);
        var at = PrefixSize;
        at += WriteField(span[at..], contextBytes);
        WriteField(span[at..], attributeBytes);
        return new SealedObjectHeader(chunkSize, headerSize, objectId, context, attributes, kmsKeyArn, wrapped, immutable);
    }

    /// <summary>The same object with another envelope (ARN and wrapped DEK), in the same H bytes.</summary>
    public SealedObjectHeader WithEnvelope(string kmsKeyArn, byte[] wrapped, string? file)
    {
        var needed = Immutable.Length + EnvelopeLength(kmsKeyArn, wrapped);
        if (needed > HeaderSize)
        {
            throw new TdeStorageException(TdeStorageException.Codes.InvalidParameter,
                $"The re-wrapped key of sealed object {ObjectIdHex} needs {needed} header bytes, but its header holds {HeaderSize}. The object was left unchanged; copy it with Open and Seal under the new key instead.",
                file);
        }

        return new SealedObjectHeader(ChunkSize, HeaderSize, ObjectId, Context, Attributes, kmsKeyArn, wrapped, Immutable);
    }

    /// <summary>The H header bytes.</summary>
    public byte[] ToBytes()
    {
        var bytes = new byte[HeaderSize];
        Immutable.CopyTo(bytes, 0);
        WriteEnvelope(bytes.AsSpan(Immutable.Length));
        return bytes;
    }

    /// <summary>Bytes [E, H): the envelope and the zero padding, which is all a Rewrap writes.</summary>
    public byte[] EnvelopeBytes()
    {
        var bytes = new byte[HeaderSize - Immutable.Length];
        WriteEnvelope(bytes);
        return bytes;
    }

    /// <summary>Reads a header from the current position of <paramref name="source"/>.</summary>
    public static SealedObjectHeader Read(Stream source, string? file)
    {
        Span<byte> prefix = stackalloc byte[PrefixSize];
        if (ReadFull(source, prefix) < Magic.Length || !prefix[..Magic.Length].SequenceEqual(Magic))
        {
            throw new TdeStorageException(TdeStorageException.Codes.NotSealedObject,
                "This is not a sealed object: it does not start with the magic \"TDEOBJ\". Open it as a plain object, or check that the right file was given.",
                file);
        }

        var version = BinaryPrimitives.ReadUInt16BigEndian(prefix[8..]);
        var cipher = BinaryPrimitives.ReadUInt16BigEndian(prefix[10..]);
        var chunkSize = BinaryPrimitives.ReadUInt32BigEndian(prefix[12..]);
        var headerSize = BinaryPrimitives.ReadUInt32BigEndian(prefix[16..]);
        if (version != Version)
        {
            throw Damaged(file, $"it has format version {version}, and this build reads version {Version}. Open it with a newer TdeEngine.");
        }

        if (cipher != CipherAes256Gcm)
        {
            throw Damaged(file, $"it names the unknown cipher id {cipher}.");
        }

        if (chunkSize is < MinChunkSize or > MaxChunkSize || headerSize is < HeaderAlignment or > MaxHeaderSize || headerSize % HeaderAlignment != 0)
        {
            throw Damaged(file, "its chunk size or header size is out of range.");
        }

        var bytes = new byte[headerSize];
        prefix.CopyTo(bytes);
        if (ReadFull(source, bytes.AsSpan(PrefixSize)) != bytes.Length - PrefixSize)
        {
            throw Damaged(file, "it is shorter than its header.");
        }

        var objectId = bytes[20..36];
        var at = PrefixSize;
        var contextBytes = ReadField(bytes, ref at, file);
        var attributeBytes = ReadField(bytes, ref at, file);
        var immutableLength = at;
        var arnBytes = ReadField(bytes, ref at, file);
        var wrapped = ReadField(bytes, ref at, file).ToArray();
        if (wrapped.Length == 0 || arnBytes.Length == 0)
        {
            throw Damaged(file, "its key ARN or wrapped data key is empty.");
        }

        var context = ParseContext(contextBytes, file);
        var attributes = ParseContext(attributeBytes, file);
        string arn;
        try
        {
            arn = StrictUtf8.GetString(arnBytes);
        }
        catch (DecoderFallbackException)
        {
            throw Damaged(file, "its key ARN is not UTF-8.");
        }

        return new SealedObjectHeader((int)chunkSize, (int)headerSize, objectId, context, attributes, arn, wrapped, bytes[..immutableLength]);
    }

    /// <summary>
    /// The plaintext length and chunk count implied by the body length (the bytes after the header).
    /// A body that no sequence of chunks can have was truncated: that chunk fails authentication.
    /// </summary>
    public (long PlaintextLength, long ChunkCount) Layout(long bodyLength, string? file)
    {
        long stride = ChunkSize + TagSize;
        var full = bodyLength / stride;
        var rest = bodyLength % stride;
        if (rest == 0 && full > 0)
        {
            return (full * ChunkSize, full);
        }

        if (rest < TagSize)
        {
            throw AuthenticationFailed(full, file);
        }

        return (full * ChunkSize + rest - TagSize, full + 1);
    }

    /// <summary>The nonce of chunk <paramref name="index"/>: u64 index ‖ u32 final flag, big-endian.</summary>
    public static void WriteNonce(Span<byte> nonce, long index, bool final)
    {
        BinaryPrimitives.WriteUInt64BigEndian(nonce, (ulong)index);
        BinaryPrimitives.WriteUInt32BigEndian(nonce[8..], final ? 1u : 0u);
    }

    /// <summary>The one error for a chunk that fails to authenticate, for whatever reason.</summary>
    public TdeStorageException AuthenticationFailed(long chunkIndex, string? file) => new(
        TdeStorageException.Codes.ObjectAuthenticationFailed,
        $"Chunk {chunkIndex} of sealed object {ObjectIdHex} failed authentication: the object was modified, truncated or assembled from other data. Restore it from a backup or an older copy.",
        file, chunkIndex);

    public static int ReadFull(Stream source, Span<byte> buffer)
    {
        var total = 0;
        while (total < buffer.Length)
        {
            var n = source.Read(buffer[total..]);
            if (n == 0)
            {
                break;
            }

            total += n;
        }

        return total;
    }

    private static int EnvelopeLength(string kmsKeyArn, byte[] wrapped) => 2 + Encoding.UTF8.GetByteCount(kmsKeyArn) + 2 + wrapped.Length;

    private void WriteEnvelope(Span<byte> span)
    {
        var at = WriteField(span, Encoding.UTF8.GetBytes(KmsKeyArn));
        WriteField(span[at..], Wrapped);
    }

    private static int WriteField(Span<byte> span, ReadOnlySpan<byte> value)
    {
        BinaryPrimitives.WriteUInt16BigEndian(span, checked((ushort)value.Length));
        value.CopyTo(span[2..]);
        return 2 + value.Length;
    }

    private static ReadOnlySpan<byte> ReadField(byte[] bytes, ref int at, string? file)
    {
        if (at + 2 > bytes.Length)
        {
            throw Damaged(file, "a length field runs past the end of the header.");
        }

        int length = BinaryPrimitives.ReadUInt16BigEndian(bytes.AsSpan(at));
        if (at + 2 + length > bytes.Length)
        {
            throw Damaged(file, "a field runs past the end of the header.");
        }

        var value = bytes.AsSpan(at + 2, length);
        at += 2 + length;
        return value;
    }

    private static EncryptionContext ParseContext(ReadOnlySpan<byte> canonical, string? file)
    {
        EncryptionContext context;
        try
        {
            context = EncryptionContext.Parse(StrictUtf8.GetString(canonical));
        }
        catch (Exception e) when (e is KmsException or DecoderFallbackException)
        {
            throw Damaged(file, "its encryption context is not a JSON object of strings.");
        }

        if (!context.CanonicalBytes.SequenceEqual(canonical))
        {
            throw Damaged(file, "its encryption context is not in canonical form.");
        }

        return context;
    }

    private static TdeStorageException Damaged(string? file, string why) => new(TdeStorageException.Codes.EnvelopeDamaged,
        $"The header of this sealed object cannot be read: {why} Restore the object from a backup.", file);

    /// <summary>A fresh random object id.</summary>
    public static byte[] NewObjectId() => RandomNumberGenerator.GetBytes(ObjectIdSize);
}
