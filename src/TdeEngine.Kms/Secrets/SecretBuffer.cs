using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace TdeEngine.Kms.Secrets;

/// <summary>
/// A fixed-size block of native memory that holds key bytes. It never moves, is never copied by the
/// GC, and is wiped with <see cref="CryptographicOperations.ZeroMemory(Span{byte})"/> when disposed
/// (or finalised).
/// </summary>
/// <remarks>
/// The owner disposes it. Not thread-safe for concurrent writes; concurrent reads of a buffer that
/// is not being disposed are fine, and <see cref="Use"/> makes reads safe against a concurrent
/// dispose. Accessing <see cref="Span"/> after disposal throws.
/// </remarks>
public sealed unsafe class SecretBuffer : IDisposable
{
    private readonly SecretHandle _handle;

    /// <summary>Allocates a zero-filled secret buffer of <paramref name="length"/> bytes.</summary>
    public SecretBuffer(int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        _handle = new SecretHandle(length);
        Length = length;
    }

    /// <summary>Allocates a buffer and fills it with cryptographically random bytes.</summary>
    public static SecretBuffer Random(int length)
    {
        var buffer = new SecretBuffer(length);
        Crypto.FastRandom.Fill(buffer.Span);
        return buffer;
    }

    /// <summary>Copies <paramref name="source"/> into a new secret buffer. The caller still wipes its own copy.</summary>
    public static SecretBuffer CopyFrom(ReadOnlySpan<byte> source)
    {
        var buffer = new SecretBuffer(source.Length);
        source.CopyTo(buffer.Span);
        return buffer;
    }

    /// <summary>The number of bytes held.</summary>
    public int Length { get; }

    // Set by Dispose before the handle is released: a lease may keep the memory (and the handle) open
    // a little longer, but the buffer counts as disposed from this moment.
    private volatile bool _disposed;

    /// <summary>True once disposed.</summary>
    public bool IsDisposed => _disposed || _handle.IsClosed;

    /// <summary>The bytes. Valid until the buffer is disposed.</summary>
    public Span<byte> Span
    {
        get
        {
            ObjectDisposedException.ThrowIf(IsDisposed, this);
            return new Span<byte>((void*)_handle.DangerousGetHandle(), Length);
        }
    }

    /// <summary>
    /// The bytes, kept valid for as long as the lease lasts: a <see cref="Dispose"/> from another thread
    /// meanwhile wipes and frees them only when the last lease ends. For a buffer that one thread reads
    /// while another may dispose it (a cached key a call is using while the cache drops it). Throws
    /// <see cref="ObjectDisposedException"/> once disposed.
    /// </summary>
    public SecretLease Use()
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        return new(_handle, Length);
    }

    /// <summary>Wipes and frees the memory (once no <see cref="Use"/> lease is open).</summary>
    public void Dispose()
    {
        _disposed = true;
        _handle.Dispose();
    }

    private sealed class SecretHandle : SafeHandle
    {
        private readonly int _length;

        public SecretHandle(int length) : base(IntPtr.Zero, ownsHandle: true)
        {
            _length = length;
            // Allocate at least one byte so a zero-length secret still has a valid, freeable handle.
            SetHandle((IntPtr)NativeMemory.AllocZeroed((nuint)Math.Max(length, 1)));
        }

        public override bool IsInvalid => handle == IntPtr.Zero;

        protected override bool ReleaseHandle()
        {
            CryptographicOperations.ZeroMemory(new Span<byte>((void*)handle, _length));
            NativeMemory.Free((void*)handle);
            return true;
        }
    }
}
