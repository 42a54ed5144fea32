using TdeEngine.Kms.Identity;
using TdeEngine.Kms.Secrets;

namespace TdeEngine.Ram.Identity;

/// <summary>
/// An access key as RAM's hot path holds it: the principal and the unwrapped secret in wiped native
/// memory, so a signed request costs no root-key unwrap (with the root key in an HSM, that would
/// be one <c>C_Decrypt</c> per request). Readers get their own copy; the copy and the wipe are
/// serialized, so a secret is never read after it was wiped.
/// </summary>
internal sealed class CachedCredential(KmsPrincipal principal, SecretBuffer secret, long loadedAt, byte[]? tokenHash = null,
    DateTimeOffset? expiration = null) : IDisposable
{
    private readonly Lock _gate = new();
    private bool _disposed;

    public KmsPrincipal Principal { get; } = principal;

    /// <summary>When the entry was read from the store (a <see cref="TimeProvider"/> timestamp).</summary>
    public long LoadedAt { get; } = loadedAt;

    /// <summary>The deletion generation of the cache it was loaded under (see <c>RamService.FindAccessKey</c>).</summary>
    public long Generation { get; init; }

    /// <summary>SHA-256 of the security token, for STS keys.</summary>
    public byte[]? TokenHash { get; } = tokenHash;

    /// <summary>When an STS key stops working.</summary>
    public DateTimeOffset? Expiration { get; } = expiration;

    /// <summary>A copy of the secret that the caller disposes, or null when this entry was already wiped (reload it).</summary>
    public SecretBuffer? CopySecret()
    {
        lock (_gate)
        {
            return _disposed ? null : SecretBuffer.CopyFrom(secret.Span);
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            _disposed = true;
            secret.Dispose();
        }
    }
}
