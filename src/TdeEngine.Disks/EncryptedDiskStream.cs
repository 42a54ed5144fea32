namespace TdeEngine.Disks;

/// <summary>
/// A <see cref="Stream"/> over an <see cref="EncryptedDisk"/>: seekable, readable, writable, with a
/// fixed length. It does not own the disk. Once it, or the disk, is disposed, CanRead, CanSeek and
/// CanWrite are false and every call throws <see cref="ObjectDisposedException"/>.
/// </summary>
/// <remarks>Not thread-safe (it has one position); the disk underneath is.</remarks>
internal sealed class EncryptedDiskStream(EncryptedDisk disk) : Stream
{
    private long _position;
    private bool _disposed;

    public override bool CanRead => IsOpen;

    public override bool CanSeek => IsOpen;

    public override bool CanWrite => IsOpen;

    public override long Length
    {
        get
        {
            ThrowIfDisposed();
            return disk.Size;
        }
    }

    public override long Position
    {
        get
        {
            ThrowIfDisposed();
            return _position;
        }

        set
        {
            ThrowIfDisposed();
            ArgumentOutOfRangeException.ThrowIfNegative(value);
            _position = value;
        }
    }

    private bool IsOpen => !_disposed && !disk.IsDisposed;

    public override void Flush() => disk.Flush();

    public override int Read(byte[] buffer, int offset, int count)
    {
        ValidateBufferArguments(buffer, offset, count);
        return Read(buffer.AsSpan(offset, count));
    }

    public override int Read(Span<byte> buffer)
    {
        ThrowIfDisposed();
        if (_position >= disk.Size)
        {
            return 0;
        }

        var n = (int)Math.Min(buffer.Length, disk.Size - _position);
        disk.Read(_position, buffer[..n]);
        _position += n;
        return n;
    }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return ValueTask.FromResult(Read(buffer.Span));
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
    {
        ValidateBufferArguments(buffer, offset, count);
        return ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();
    }

    public override void Write(byte[] buffer, int offset, int count)
    {
        ValidateBufferArguments(buffer, offset, count);
        Write(buffer.AsSpan(offset, count));
    }

    // The disk checks the range: a write that does not fit throws before anything is written.
    public override void Write(ReadOnlySpan<byte> buffer)
    {
        ThrowIfDisposed();
        disk.Write(_position, buffer);
        _position += buffer.Length;
    }

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        Write(buffer.Span);
        return ValueTask.CompletedTask;
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
    {
        ValidateBufferArguments(buffer, offset, count);
        return WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();
    }

    public override long Seek(long offset, SeekOrigin origin)
    {
        ThrowIfDisposed();
        var target = origin switch
        {
            SeekOrigin.Begin => offset,
            SeekOrigin.Current => _position + offset,
            SeekOrigin.End => disk.Size + offset,
            _ => throw new ArgumentOutOfRangeException(nameof(origin)),
        };
        if (target < 0)
        {
            throw new IOException("An attempt was made to move the position before the beginning of the disk.");
        }

        _position = target;
        return target;
    }

    public override void SetLength(long value) =>
        throw new NotSupportedException("A disk has a fixed size; its stream cannot change length.");

    protected override void Dispose(bool disposing)
    {
        _disposed = true;
        base.Dispose(disposing);
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(!IsOpen, this);
}
