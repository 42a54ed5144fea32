using System.Buffers;
using System.Security.Cryptography;

namespace TdeEngine.Kms.Api;

/// <summary>
/// An <see cref="IBufferWriter{T}"/> over pooled arrays that wipes every array it lets go of.
/// Response bodies can hold a Base64 data key, so they are written here and never into a string;
/// request and answer bodies read off the network (the server's V3 reader, the remote key provider)
/// are gathered here too.
/// </summary>
/// <remarks>One writer per body, on one thread. Dispose wipes the last array and returns it.</remarks>
public sealed class SecretBufferWriter : IBufferWriter<byte>, IDisposable
{
    private byte[] _buffer;
    private int _written;

    /// <summary>Starts with a pooled array of at least <paramref name="initialCapacity"/> bytes.</summary>
    public SecretBufferWriter(int initialCapacity = 1024) => _buffer = ArrayPool<byte>.Shared.Rent(initialCapacity);

    /// <summary>The bytes written so far; valid until the next write or dispose.</summary>
    public ReadOnlySpan<byte> WrittenSpan => _buffer.AsSpan(0, _written);

    /// <inheritdoc />
    public void Advance(int count) => _written += count;

    /// <inheritdoc />
    public Memory<byte> GetMemory(int sizeHint = 0)
    {
        Ensure(sizeHint);
        return _buffer.AsMemory(_written);
    }

    /// <inheritdoc />
    public Span<byte> GetSpan(int sizeHint = 0)
    {
        Ensure(sizeHint);
        return _buffer.AsSpan(_written);
    }

    /// <summary>Wipes the array and returns it to the pool.</summary>
    public void Dispose()
    {
        CryptographicOperations.ZeroMemory(_buffer);
        ArrayPool<byte>.Shared.Return(_buffer);
        _buffer = [];
        _written = 0;
    }

    private void Ensure(int sizeHint)
    {
        var needed = _written + Math.Max(sizeHint, 1);
        if (needed <= _buffer.Length)
        {
            return;
        }

        var larger = ArrayPool<byte>.Shared.Rent(Math.Max(needed, _buffer.Length * 2));
        _buffer.AsSpan(0, _written).CopyTo(larger);
        CryptographicOperations.ZeroMemory(_buffer);
        ArrayPool<byte>.Shared.Return(_buffer);
        _buffer = larger;
    }
}
