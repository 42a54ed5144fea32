using System.Buffers;
using System.Security.Cryptography;
using TdeEngine.Kms.Envelope;
using TdeEngine.Storage.Errors;
using TdeEngine.Storage.Keys;

namespace TdeEngine.Objects;

/// <summary>
/// The state of one Seal, shared by the synchronous and asynchronous loops: the header, the
/// AES-GCM key (the object's fresh data key) and two plaintext buffers for reading one chunk
/// ahead. The loops read into <see cref="Current"/> and <see cref="Next"/> and write what
/// <see cref="Seal"/> returns.
/// </summary>
/// <remarks>Owns the AesGcm and three pooled buffers, returned wiped on dispose.</remarks>
internal sealed class ChunkSealer : IDisposable
{
    private readonly SealedObjectHeader _header;
    private readonly AesGcm _aes;
    private readonly int _chunkSize;
    private readonly byte[] _output;
    private byte[] _current;
    private byte[] _next;
    private long _index;
    private long _total;

    private ChunkSealer(SealedObjectHeader header, AesGcm aes, int chunkSize)
    {
        _header = header;
        _aes = aes;
        _chunkSize = chunkSize;
        _current = ArrayPool<byte>.Shared.Rent(chunkSize);
        _next = ArrayPool<byte>.Shared.Rent(chunkSize);
        _output = ArrayPool<byte>.Shared.Rent(chunkSize + SealedObjectHeader.TagSize);
        HeaderBytes = header.ToBytes();
    }

    /// <summary>The header to write before the first chunk.</summary>
    public byte[] HeaderBytes { get; }

    /// <summary>Where the chunk to seal next is read.</summary>
    public Memory<byte> Current => _current.AsMemory(0, _chunkSize);

    /// <summary>Where the chunk after it is read (to know whether the current one is the last).</summary>
    public Memory<byte> Next => _next.AsMemory(0, _chunkSize);

    /// <summary>The header's fields and the plaintext bytes sealed so far.</summary>
    public SealedObjectInfo Info => SealedObjectInfo.From(_header, _total);

    /// <summary>
    /// Validates the arguments, gets a fresh data key (one GenerateDataKey) and builds the header.
    /// The plaintext data key is wiped before this returns; AesGcm keeps its own copy.
    /// </summary>
    public static ChunkSealer Start(Stream plaintext, Stream destination, IDataKeyProvider keys, string kmsKeyId,
        EncryptionContext context, int chunkSize, EncryptionContext attributes)
    {
        ArgumentNullException.ThrowIfNull(plaintext);
        ArgumentNullException.ThrowIfNull(destination);
        ArgumentNullException.ThrowIfNull(keys);
        ArgumentException.ThrowIfNullOrWhiteSpace(kmsKeyId);
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(attributes);
        if (!plaintext.CanRead || !destination.CanWrite)
        {
            throw new ArgumentException("Seal reads the plaintext stream and writes the destination stream.");
        }

        if (chunkSize is < SealedObjectHeader.MinChunkSize or > SealedObjectHeader.MaxChunkSize)
        {
            throw new TdeStorageException(TdeStorageException.Codes.InvalidParameter,
                $"The chunk size {chunkSize} is out of range: use {SealedObjectHeader.MinChunkSize} bytes to {SealedObjectHeader.MaxChunkSize / 1024 / 1024} MiB (default {SealedObject.DefaultChunkSize}).");
        }

        using var dataKey = keys.GenerateDataKey(kmsKeyId, context);
        var header = SealedObjectHeader.Create(chunkSize, SealedObjectHeader.NewObjectId(), context, attributes, dataKey.KmsKeyArn, dataKey.Wrapped);
        return new ChunkSealer(header, new AesGcm(dataKey.Plaintext.Span, SealedObjectHeader.TagSize), chunkSize);
    }

    /// <summary>
    /// Seals the <paramref name="length"/> bytes in <see cref="Current"/> as the next chunk, the
    /// final one when it is short or <paramref name="nextLength"/> is 0, then makes the chunk read
    /// into <see cref="Next"/> the current one. Returns the sealed chunk (valid until the next call).
    /// </summary>
    public (ReadOnlyMemory<byte> Chunk, bool Final) Seal(int length, int nextLength)
    {
        var final = length < _chunkSize || nextLength == 0;
        Span<byte> nonce = stackalloc byte[SealedObjectHeader.NonceSize];
        SealedObjectHeader.WriteNonce(nonce, _index, final);
        var sealedChunk = _output.AsSpan(0, length + SealedObjectHeader.TagSize);
        _aes.Encrypt(nonce, _current.AsSpan(0, length), sealedChunk[..length], sealedChunk[length..], _header.Immutable);
        _total += length;
        _index++;
        (_current, _next) = (_next, _current);
        return (_output.AsMemory(0, sealedChunk.Length), final);
    }

    public void Dispose()
    {
        _aes.Dispose();
        ArrayPool<byte>.Shared.Return(_current, clearArray: true);
        ArrayPool<byte>.Shared.Return(_next, clearArray: true);
        ArrayPool<byte>.Shared.Return(_output, clearArray: true);
    }
}
