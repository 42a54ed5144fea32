using System.Runtime.InteropServices;

namespace TdeEngine.Kms.Secrets;

/// <summary>
/// A read of a <see cref="SecretBuffer"/> that a concurrent dispose cannot pull from under it: the
/// buffer's handle is referenced until <see cref="Dispose"/>, so the memory is wiped and freed after
/// the lease, not during it. Use with <c>using</c>, on one thread.
/// </summary>
/// <remarks>
/// Dispose it exactly once, and do not copy it: each <see cref="Dispose"/> releases one reference,
/// so a second one (or one on a copy) would let the memory be freed while the buffer still uses it.
/// <c>using var lease = buffer.Use();</c> does this by construction.
/// </remarks>
public readonly unsafe ref struct SecretLease
{
    private readonly SafeHandle _handle;

    internal SecretLease(SafeHandle handle, int length)
    {
        var added = false;
        handle.DangerousAddRef(ref added);   // throws ObjectDisposedException once the buffer is disposed
        _handle = handle;
        Span = new Span<byte>((void*)handle.DangerousGetHandle(), length);
    }

    /// <summary>The bytes; valid until the lease is disposed.</summary>
    public Span<byte> Span { get; }

    /// <summary>Ends the lease; the last one after a dispose wipes and frees the memory.</summary>
    public void Dispose() => _handle.DangerousRelease();
}
