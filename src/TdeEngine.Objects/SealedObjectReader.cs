using System.Buffers;
using System.Security.Cryptography;

namespace TdeEngine.Objects;

/// <summary>
/// The plaintext of a sealed object as a read-only, seekable stream. A read decrypts and
/// authenticates only the chunks it touches (one at a time, the last one cached), so range reads
/// cost one chunk per 64 KiB read, not the whole object. Created by <see cref="SealedObject.Open"/>.
/// </summary>
/// <remarks>
/// <para>Not thread-safe: one reader per thread. It owns one <see cref="AesGcm"/> (disposed with it)
/// and two pooled buffers, returned wiped on dispose; the source stream is disposed with it unless
/// it was opened with <c>leaveOpen</c>.</para>
/// <para>A chunk that fails authentication throws <c>TdeStorageException</c>
/// <c>Tde.ObjectAuthenticationFailed</c> with the chunk index; no unauthenticated byte is ever returned.</para>
/// </remarks>
public sealed class SealedObjectReader : Stream
{
    private readonly Stream _source;
    private readonly long _start;
    private readonly SealedObjectHeader _header;
    private readonly long _length;
    private readonly long _chunkCount;
    private readonly AesGcm _aes;
    private readonly string? _file;
    private bool _leaveOpen;
    private byte[]? _plain;
    private byte[]? _sealed;
    private long _cachedChunk = -1;
    private int _cachedLength;
    private long _position;

    internal SealedObjectReader(Stream source, long start, SealedObjectHeader header, long length, long chunkCount, AesGcm aes,
        bool leaveOpen, string? file)
    {
        _source = source;
        _start = start;
        _header = header;
        _length = length;
        _chunkCount = chunkCount;
        _aes = aes;
        _leaveOpen = leaveOpen;
        _file = file;
        _plain = ArrayPool<byte>.Shared.Rent(header.ChunkSize);
        _sealed = ArrayPool<byte>.Shared.Rent(header.ChunkSize + SealedObjectHeader.TagSize);
        Info = SealedObjectInfo.From(header, length);
    }

    /// <summary>The header's fields (no secret).</summary>
    public SealedObjectInfo Info { get; }

    /// <inheritdoc/>
    public override bool CanRead => _plain is not null;

    /// <inheritdoc/>
    public override bool CanSeek => _plain is not null;

    /// <inheritdoc/>
    public override bool CanWrite => false;

    /// <summary>The plaintext length.</summary>
    public override long Length
    {
        get
        {
            ThrowIfDisposed();
            return _length;
        }
    }

    /// <inheritdoc/>
    public override long Position
    {
        get
        {
            ThrowIfDisposed();
            return _position;
        }
        set
        {
            // As FileStream: a negative Position is an argument error; Seek before the start is an IOException.
            ArgumentOutOfRangeException.ThrowIfNegative(value);
            Seek(value, SeekOrigin.Begin);
        }
    }

    /// <inheritdoc/>
    public override int Read(byte[] buffer, int offset, int count)
    {
        ValidateBufferArguments(buffer, offset, count);
        return Read(buffer.AsSpan(offset, count));
    }

    /// <inheritdoc/>
    public override int Read(Span<byte> buffer)
    {
        ThrowIfDisposed();
        var total = 0;
        while (!buffer.IsEmpty && _position < _length)
        {
            var chunk = _position / _header.ChunkSize;
            var offsetInChunk = (int)(_position % _header.ChunkSize);
            LoadChunk(chunk);
            var n = Math.Min(buffer.Length, _cachedLength - offsetInChunk);
            _plain.AsSpan(offsetInChunk, n).CopyTo(buffer);
            buffer = buffer[n..];
            _position += n;
            total += n;
        }

        return total;
    }

    /// <inheritdoc/>
    public override int ReadByte()
    {
        Span<byte> one = stackalloc byte[1];
        return Read(one) == 1 ? one[0] : -1;
    }

    /// <inheritdoc/>
    public override long Seek(long offset, SeekOrigin origin)
    {
        ThrowIfDisposed();
        _position = SeekTarget.Of(offset, origin, _position, _length, "object");
        return _position;
    }

    /// <summary>Does nothing: the stream is read-only.</summary>
    public override void Flush()
    {
    }

    /// <summary>Not supported: the stream is read-only.</summary>
    public override void SetLength(long value) => throw new NotSupportedException("A sealed object is read-only; seal a new one.");

    /// <summary>Not supported: the stream is read-only.</summary>
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException("A sealed object is read-only; seal a new one.");

    /// <summary>Decrypts the final chunk, which proves the chunk count (and so the length) is the one sealed.</summary>
    internal void AuthenticateFinalChunk() => LoadChunk(_chunkCount - 1);

    /// <summary>Releases everything but the source (Open failed after creating the reader).</summary>
    internal void Abandon()
    {
        _leaveOpen = true;
        Dispose();
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing && _plain is not null)
        {
            _aes.Dispose();
            ArrayPool<byte>.Shared.Return(_plain, clearArray: true);
            ArrayPool<byte>.Shared.Return(_sealed!, clearArray: true);
            _plain = null;
            _sealed = null;
            if (!_leaveOpen)
            {
                _source.Dispose();
            }
        }

        base.Dispose(disposing);
    }

    private void LoadChunk(long index)
    {
        if (index == _cachedChunk)
        {
            return;
        }

        _cachedChunk = -1;
        var final = index == _chunkCount - 1;
        var plainLength = final ? (int)(_length - index * _header.ChunkSize) : _header.ChunkSize;
        var sealedChunk = _sealed.AsSpan(0, plainLength + SealedObjectHeader.TagSize);
        _source.Position = _start + _header.HeaderSize + index * (_header.ChunkSize + (long)SealedObjectHeader.TagSize);
        if (SealedObjectHeader.ReadFull(_source, sealedChunk) != sealedChunk.Length)
        {
            throw _header.AuthenticationFailed(index, _file);   // the file shrank since Open
        }

        Span<byte> nonce = stackalloc byte[SealedObjectHeader.NonceSize];
        SealedObjectHeader.WriteNonce(nonce, index, final);
        var plain = _plain.AsSpan(0, plainLength);
        try
        {
            _aes.Decrypt(nonce, sealedChunk[..plainLength], sealedChunk[plainLength..], plain, _header.Immutable);
        }
        catch (AuthenticationTagMismatchException)
        {
            CryptographicOperations.ZeroMemory(plain);
            throw _header.AuthenticationFailed(index, _file);
        }

        _cachedChunk = index;
        _cachedLength = plainLength;
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_plain is null, this);
}
