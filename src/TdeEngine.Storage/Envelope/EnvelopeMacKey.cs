using System.Security.Cryptography;
using TdeEngine.Kms.Secrets;

namespace TdeEngine.Storage.Envelope;

/// <summary>
/// The key that authenticates a database's envelope: HKDF-SHA256 of a DEK (empty salt, info
/// <c>"TdeEngine envelope MAC v1"</c>, 32 bytes), used with HMAC-SHA256 over the envelope slot.
/// </summary>
/// <remarks>
/// The subkey lives in a <see cref="SecretBuffer"/> (native memory, wiped on dispose) and is never
/// copied into a managed array or a string. Deriving it with its own info label keeps it apart
/// from the DEK's use as the page key. Thread-safe for <see cref="Compute"/> until disposed.
/// </remarks>
internal sealed class EnvelopeMacKey : IDisposable
{
    /// <summary>Bytes of the MAC (and of the subkey).</summary>
    public const int Size = 32;

    private static ReadOnlySpan<byte> Info => "TdeEngine envelope MAC v1"u8;

    private readonly SecretBuffer _key;

    private EnvelopeMacKey(SecretBuffer key) => _key = key;

    /// <summary>Derives the envelope MAC key from a plaintext DEK.</summary>
    public static EnvelopeMacKey Derive(ReadOnlySpan<byte> dek)
    {
        var key = new SecretBuffer(Size);
        try
        {
            HKDF.DeriveKey(HashAlgorithmName.SHA256, dek, key.Span, salt: default, Info);
            return new EnvelopeMacKey(key);
        }
        catch
        {
            key.Dispose();
            throw;
        }
    }

    /// <summary>A copy the caller owns (and disposes).</summary>
    public EnvelopeMacKey Copy() => new(SecretBuffer.CopyFrom(_key.Span));

    /// <summary>HMAC-SHA256 of <paramref name="data"/> into <paramref name="mac"/> (32 bytes).</summary>
    public void Compute(ReadOnlySpan<byte> data, Span<byte> mac) => HMACSHA256.HashData(_key.Span, data, mac[..Size]);

    /// <summary>True when <paramref name="mac"/> is the MAC of <paramref name="data"/> (compared in constant time).</summary>
    public bool Verify(ReadOnlySpan<byte> data, ReadOnlySpan<byte> mac)
    {
        Span<byte> expected = stackalloc byte[Size];
        Compute(data, expected);
        return mac.Length == Size && CryptographicOperations.FixedTimeEquals(expected, mac);
    }

    public void Dispose() => _key.Dispose();
}
