using System.Runtime.InteropServices;
using System.Security.Cryptography;
using TdeEngine.Kms.Crypto;
using TdeEngine.Kms.Secrets;

namespace TdeEngine.Storage.Pages;

/// <summary>Makes page ciphers from a DEK.</summary>
internal static class PageCipher
{
    public const int KeySize = 32;

    /// <summary>A cipher for <paramref name="suite"/> keyed with <paramref name="dek"/> (the caller keeps and wipes its copy).</summary>
    public static IPageCipher Create(PageCipherSuite suite, ReadOnlySpan<byte> dek)
    {
        if (dek.Length != KeySize)
        {
            throw new CryptographicException("A database DEK is 32 bytes.");
        }

        return suite switch
        {
            PageCipherSuite.Aes256Gcm when Sodium.Aes256GcmAvailable => new SodiumAesGcmPageCipher(dek),
            PageCipherSuite.Aes256Gcm => new OneShotAesGcmPageCipher(dek),
            PageCipherSuite.Aegis256 when Sodium.IsAvailable => new Aegis256PageCipher(dek),
            PageCipherSuite.Aegis256 => throw new PlatformNotSupportedException("AEGIS-256 needs libsodium, which did not load on this platform. Use aes-256-gcm."),
            _ => throw new ArgumentOutOfRangeException(nameof(suite)),
        };
    }
}

/// <summary>AES-256-GCM over libsodium with the key schedule and GHASH powers computed once per DEK.</summary>
internal sealed unsafe class SodiumAesGcmPageCipher : IPageCipher
{
    private byte* _state;

    public SodiumAesGcmPageCipher(ReadOnlySpan<byte> key)
    {
        _state = (byte*)NativeMemory.AlignedAlloc(Sodium.Aes256GcmStateBytes, 16);
        fixed (byte* k = key)
        {
            Sodium.crypto_aead_aes256gcm_beforenm(_state, k);
        }
    }

    public PageCipherSuite Suite => PageCipherSuite.Aes256Gcm;

    public void Seal(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> aad, ReadOnlySpan<byte> plaintext, Span<byte> ciphertext, Span<byte> tag)
    {
        ObjectDisposedException.ThrowIf(_state is null, this);
        fixed (byte* n = nonce, a = aad, m = plaintext, c = ciphertext, t = tag)
        {
            ulong tagLength;
            Sodium.crypto_aead_aes256gcm_encrypt_detached_afternm(c, t, &tagLength, m, (ulong)plaintext.Length, a, (ulong)aad.Length, null, n, _state);
        }
    }

    public bool Open(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> aad, ReadOnlySpan<byte> ciphertext, ReadOnlySpan<byte> tag, Span<byte> plaintext)
    {
        ObjectDisposedException.ThrowIf(_state is null, this);
        fixed (byte* n = nonce, a = aad, m = plaintext, c = ciphertext, t = tag)
        {
            if (Sodium.crypto_aead_aes256gcm_decrypt_detached_afternm(m, null, c, (ulong)ciphertext.Length, t, a, (ulong)aad.Length, n, _state) == 0)
            {
                return true;
            }
        }

        CryptographicOperations.ZeroMemory(plaintext);
        return false;
    }

    public void Dispose()
    {
        if (_state is not null)
        {
            CryptographicOperations.ZeroMemory(new Span<byte>(_state, Sodium.Aes256GcmStateBytes));
            NativeMemory.AlignedFree(_state);
            _state = null;
        }
    }
}

/// <summary>AES-256-GCM where libsodium's is unavailable (no AES-NI): .NET's AesGcm, keyed per call.</summary>
internal sealed class OneShotAesGcmPageCipher(ReadOnlySpan<byte> key) : IPageCipher
{
    private readonly SecretBuffer _key = SecretBuffer.CopyFrom(key);

    public PageCipherSuite Suite => PageCipherSuite.Aes256Gcm;

    public void Seal(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> aad, ReadOnlySpan<byte> plaintext, Span<byte> ciphertext, Span<byte> tag) =>
        Aes256GcmOneShot.Encrypt(_key.Span, nonce, plaintext, aad, ciphertext, tag);

    public bool Open(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> aad, ReadOnlySpan<byte> ciphertext, ReadOnlySpan<byte> tag, Span<byte> plaintext) =>
        Aes256GcmOneShot.TryDecrypt(_key.Span, nonce, ciphertext, tag, aad, plaintext);

    public void Dispose() => _key.Dispose();
}

/// <summary>AEGIS-256 over libsodium (AES-NI where present). Its key setup is part of every call and is cheap.</summary>
internal sealed unsafe class Aegis256PageCipher(ReadOnlySpan<byte> key) : IPageCipher
{
    private readonly SecretBuffer _key = SecretBuffer.CopyFrom(key);

    public PageCipherSuite Suite => PageCipherSuite.Aegis256;

    public void Seal(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> aad, ReadOnlySpan<byte> plaintext, Span<byte> ciphertext, Span<byte> tag)
    {
        fixed (byte* k = _key.Span, n = nonce, a = aad, m = plaintext, c = ciphertext, t = tag)
        {
            ulong tagLength;
            Sodium.crypto_aead_aegis256_encrypt_detached(c, t, &tagLength, m, (ulong)plaintext.Length, a, (ulong)aad.Length, null, n, k);
        }
    }

    public bool Open(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> aad, ReadOnlySpan<byte> ciphertext, ReadOnlySpan<byte> tag, Span<byte> plaintext)
    {
        fixed (byte* k = _key.Span, n = nonce, a = aad, m = plaintext, c = ciphertext, t = tag)
        {
            if (Sodium.crypto_aead_aegis256_decrypt_detached(m, null, c, (ulong)ciphertext.Length, t, a, (ulong)aad.Length, n, k) == 0)
            {
                return true;
            }
        }

        CryptographicOperations.ZeroMemory(plaintext);
        return false;
    }

    public void Dispose() => _key.Dispose();
}
